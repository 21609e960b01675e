package awstest_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/devstack"
)

func TestMain(m *testing.M) { awstest.Main(m) }

func TestMotoIsSharedAndServesTheSDK(t *testing.T) {
	a := awstest.Moto(t)
	b := awstest.Moto(t)
	if a != b {
		t.Fatal("Moto started a second server in one test binary")
	}
	cfg := a.Config()
	if cfg.Region != "us-east-1" || cfg.BaseEndpoint == nil || *cfg.BaseEndpoint != a.Endpoint {
		t.Errorf("Config = region %q endpoint %v, want us-east-1 at %s", cfg.Region, cfg.BaseEndpoint, a.Endpoint)
	}
	creds, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil || creds.AccessKeyID != "test" || creds.SecretAccessKey != "test" {
		t.Errorf("credentials = %+v, %v; want test/test", creds, err)
	}
	if _, err := dynamodb.NewFromConfig(cfg).ListTables(context.Background(), &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("moto does not answer the SDK: %v", err)
	}
}

func TestNewStackIsolatesTests(t *testing.T) {
	srv := awstest.Moto(t)
	a := awstest.NewStack(t, srv)
	b := awstest.NewStack(t, srv)
	if a.Name == b.Name {
		t.Fatalf("two stacks share the name %s", a.Name)
	}
	for _, id := range []string{devstack.IdentitiesTableID, devstack.ObservationsTableID, devstack.StatesTableID} {
		if a.TableName(id) == "" || a.TableName(id) == b.TableName(id) {
			t.Errorf("%s: %q and %q", id, a.TableName(id), b.TableName(id))
		}
	}
	if a.BusName(devstack.AttributionBusID) == b.BusName(devstack.AttributionBusID) || a.AlertsQueue.URL == b.AlertsQueue.URL {
		t.Error("two stacks share a bus or an alerts queue")
	}
	tables, err := dynamodb.NewFromConfig(srv.Config()).ListTables(context.Background(), &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*devstack.Stack{a, b} {
		if !slices.Contains(tables.TableNames, s.TableName(devstack.StatesTableID)) {
			t.Errorf("table %s is not on the server", s.TableName(devstack.StatesTableID))
		}
	}
}

func TestRepoRootHoldsTemplate(t *testing.T) {
	root := awstest.RepoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "template.yaml")); err != nil {
		t.Fatal(err)
	}
	if len(awstest.Template(t).Resources) == 0 {
		t.Fatal("template has no resources")
	}
}
