package faultproxy_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/devstack"
	"decnet-attribution/internal/testrig/faultproxy"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// mustMoto returns the base URL of the moto server shared by the tests of
// this package, starting it if needed; the test fails if it cannot run.
func mustMoto(tb testing.TB) string {
	tb.Helper()
	return awstest.Moto(tb).Endpoint
}

// clients are SDK clients bound to one endpoint, with retries off so that
// every fault surfaces.
type clients struct {
	ddb *dynamodb.Client
	eb  *eventbridge.Client
	sqs *sqs.Client
}

// newClients binds the clients to endpoint, sending with hc (nil: the
// SDK's own HTTP client).
func newClients(endpoint string, hc aws.HTTPClient) clients {
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		Retryer:     func() aws.Retryer { return aws.NopRetryer{} },
		HTTPClient:  hc,
	}
	return clients{
		ddb: dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(endpoint) }),
		eb:  eventbridge.NewFromConfig(cfg, func(o *eventbridge.Options) { o.BaseEndpoint = aws.String(endpoint) }),
		sqs: sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(endpoint) }),
	}
}

// mustInjector returns an injector with the seed and rules.
func mustInjector(tb testing.TB, seed int64, rules ...faultproxy.Rule) *faultproxy.Injector {
	tb.Helper()
	f, err := faultproxy.New(faultproxy.Config{Seed: seed, Rules: rules})
	if err != nil {
		tb.Fatalf("new injector: %v", err)
	}
	tb.Cleanup(f.CloseIdleConnections)
	return f
}

// mustProxy starts a proxy serving faults in front of upstream and closes
// it at the end of the test.
func mustProxy(tb testing.TB, upstream string, faults *faultproxy.Injector) *faultproxy.Proxy {
	tb.Helper()
	p, err := faultproxy.Start(upstream, faults)
	if err != nil {
		tb.Fatalf("start proxy: %v", err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Errorf("close proxy: %v", err)
		}
	})
	return p
}

// route is one way of putting an injector between a client and moto: it
// returns the endpoint to call and the HTTP client to call it with.
type route struct {
	name string
	open func(tb testing.TB, upstream string, faults *faultproxy.Injector) (string, *http.Client)
}

// routes are the injector as the client's transport and as a proxy: every
// fault must look the same to the SDK both ways.
var routes = []route{
	{"transport", func(_ testing.TB, upstream string, faults *faultproxy.Injector) (string, *http.Client) {
		return upstream, faults.Client()
	}},
	{"proxy", func(tb testing.TB, upstream string, faults *faultproxy.Injector) (string, *http.Client) {
		return mustProxy(tb, upstream, faults).URL(), http.DefaultClient
	}},
}

// clients returns SDK clients that reach upstream through faults this way.
func (r route) clients(tb testing.TB, upstream string, faults *faultproxy.Injector) clients {
	tb.Helper()
	endpoint, hc := r.open(tb, upstream, faults)
	return newClients(endpoint, hc)
}

// eachRoute runs test once per route.
func eachRoute(t *testing.T, test func(t *testing.T, r route)) {
	t.Helper()
	for _, r := range routes {
		t.Run(r.name, func(t *testing.T) { test(t, r) })
	}
}

// uniqueName returns a resource name no other test uses against the shared
// moto server.
func uniqueName(prefix string) string {
	return devstack.UniqueName(prefix + "-")
}

func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// mustTable creates a table with string hash key "pk" directly on moto.
func mustTable(tb testing.TB, direct clients) string {
	tb.Helper()
	name := uniqueName("faultproxy-table")
	_, err := direct.ddb.CreateTable(testContext(tb), &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	})
	if err != nil {
		tb.Fatalf("create table %s: %v", name, err)
	}
	return name
}

func putItemInput(table, pk string) *dynamodb.PutItemInput {
	return &dynamodb.PutItemInput{
		TableName: aws.String(table),
		Item:      map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: pk}},
	}
}

// itemExists reads pk directly from moto.
func itemExists(tb testing.TB, direct clients, table, pk string) bool {
	tb.Helper()
	out, err := direct.ddb.GetItem(testContext(tb), &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: pk}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		tb.Fatalf("get item %s from %s: %v", pk, table, err)
	}
	return out.Item != nil
}

// wantCounts compares the counters that matter to a test.
func wantCounts(tb testing.TB, what string, got faultproxy.Counts, requests, forwarded int64, faults map[faultproxy.Fault]int64) {
	tb.Helper()
	if got.Requests != requests || got.Forwarded != forwarded {
		tb.Errorf("%s: requests/forwarded = %d/%d, want %d/%d", what, got.Requests, got.Forwarded, requests, forwarded)
	}
	if len(got.Faults) != len(faults) {
		tb.Errorf("%s: faults = %v, want %v", what, got.Faults, faults)
		return
	}
	for f, n := range faults {
		if got.Faults[f] != n {
			tb.Errorf("%s: faults = %v, want %v", what, got.Faults, faults)
			return
		}
	}
}
