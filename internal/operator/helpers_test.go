package operator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
	"decnet-attribution/internal/replay"
	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/devstack"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// testEnv is one test's stack on the shared moto server.
type testEnv struct {
	stack  *devstack.Stack
	cfg    aws.Config
	ddb    *dynamodb.Client
	sqs    *sqs.Client
	eb     *eventbridge.Client
	tables ddbstore.Tables
	store  *ddbstore.Store
}

func mustEnv(tb testing.TB) *testEnv {
	tb.Helper()
	srv := awstest.Moto(tb)
	stack := awstest.NewStack(tb, srv)
	cfg := srv.Config()
	e := &testEnv{
		stack: stack,
		cfg:   cfg,
		ddb:   dynamodb.NewFromConfig(cfg),
		sqs:   sqs.NewFromConfig(cfg),
		eb:    eventbridge.NewFromConfig(cfg),
		tables: ddbstore.Tables{
			Identities:   stack.TableName(devstack.IdentitiesTableID),
			Observations: stack.TableName(devstack.ObservationsTableID),
			States:       stack.TableName(devstack.StatesTableID),
		},
	}
	e.store = ddbstore.New(e.ddb, e.tables, 0)
	return e
}

// testStream is a small stream: attackers × primitives of every kind,
// values drawn so that the categorical majority and the window matter.
func testStream(attackers, perSeries int, seed uint64) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 11))
	prims := []string{"motor.input_modality", "environmental.locale", "toolchain.c2.beacon_interval_ms", "toolchain.ssh.hassh_client"}
	var out [][]byte
	for i := range perSeries {
		for a := range attackers {
			for _, p := range prims {
				var v any
				switch p {
				case "toolchain.c2.beacon_interval_ms":
					v = 30000 + rng.IntN(3)*4000
				case "toolchain.ssh.hassh_client":
					v = fmt.Sprintf("hassh-%d", rng.IntN(2))
				case "environmental.locale":
					v = []string{"en_US", "de_DE"}[i%2] // alternates: multi_actor
				default:
					v = []string{"typed", "typed", "pasted"}[rng.IntN(3)]
				}
				b, _ := json.Marshal(map[string]any{
					"id": fmt.Sprintf("obs-%d-%s-%d", a, p, i), "primitive": p, "value": v,
					"evidence_ref": fmt.Sprintf("shard:att-%d#s%03d", a, i), "ts": 1_700_000_000 + 3600*float64(i) + float64(a),
					"attacker_uuid": fmt.Sprintf("att-%d", a), "source": "test", "v": 1,
				})
				out = append(out, b)
			}
		}
	}
	return out
}

// recorder is a Publisher keeping what it is given.
type recorder struct {
	mu     sync.Mutex
	events []attribution.Event
}

func (r *recorder) Publish(_ context.Context, events []attribution.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, events...)
	for _, e := range events {
		busTook.Store(e.ID, true)
	}
	return nil
}

// busTook holds the ID of every event a recorder took, in any test: event
// IDs name their series, so tests never share one.
var busTook sync.Map

// mustProcess runs bodies through the processor over the stack's tables,
// ten at a time as the queue would deliver them.
func mustProcess(tb testing.TB, e *testEnv, bodies [][]byte, th attribution.Thresholds) *recorder {
	tb.Helper()
	rec := &recorder{}
	p := &attribution.Processor{
		Store: e.store, Identities: e.store, Publisher: rec,
		Registry: attribution.BuiltinRegistry(), Thresholds: th, Concurrency: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for start := 0; start < len(bodies); start += 10 {
		var msgs []attribution.Message
		for i, b := range bodies[start:min(start+10, len(bodies))] {
			msgs = append(msgs, attribution.Message{ID: fmt.Sprint(start + i), Body: b})
		}
		for i, err := range p.Process(context.Background(), msgs) {
			if err != nil {
				tb.Fatalf("message %d: %v", start+i, err)
			}
		}
	}
	return rec
}

// replayStates replays bodies in memory and returns the final states.
func replayStates(tb testing.TB, bodies [][]byte, th attribution.Thresholds) map[attribution.SeriesKey]attribution.State {
	tb.Helper()
	var out, errOut bytes.Buffer
	res, err := replay.Run(context.Background(), bytes.NewReader(bytes.Join(bodies, []byte("\n"))), &out, &errOut,
		replay.Options{Registry: attribution.BuiltinRegistry(), Thresholds: th})
	if err != nil || res.BadLines > 0 {
		tb.Fatalf("replay: %v, %d bad lines: %s", err, res.BadLines, errOut.String())
	}
	states := map[attribution.SeriesKey]attribution.State{}
	dec := json.NewDecoder(&out)
	for dec.More() {
		var line struct {
			Type         string `json:"type"`
			IdentityUUID string `json:"identity_uuid"`
			Primitive    string `json:"primitive"`
			attribution.State
		}
		if err := dec.Decode(&line); err != nil {
			tb.Fatal(err)
		}
		if line.Type == "state" {
			states[attribution.SeriesKey{IdentityUUID: line.IdentityUUID, Primitive: line.Primitive}] = line.State
		}
	}
	return states
}

// tableStates reads the current state of every series of the stream.
func tableStates(tb testing.TB, e *testEnv, keys []attribution.SeriesKey) map[attribution.SeriesKey]*attribution.SeriesRecord {
	tb.Helper()
	out := map[attribution.SeriesKey]*attribution.SeriesRecord{}
	for _, k := range keys {
		recs, err := e.store.LoadSeries(context.Background(), k.IdentityUUID, []string{k.Primitive}, true)
		if err != nil {
			tb.Fatal(err)
		}
		if recs[k.Primitive] == nil {
			tb.Fatalf("no record for %s", k)
		}
		out[k] = recs[k.Primitive]
	}
	return out
}

func sortedKeys[V any](m map[attribution.SeriesKey]V) []attribution.SeriesKey {
	keys := make([]attribution.SeriesKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	return keys
}

// sameState compares what the rebuild promises to reproduce.
func sameState(a, b attribution.State) bool {
	return a.State == b.State && a.CurrentValue == b.CurrentValue && a.ObservationCount == b.ObservationCount &&
		a.LastObservationTS == b.LastObservationTS && (a.Confidence == b.Confidence || abs(a.Confidence-b.Confidence) < 1e-12)
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

// busQueue is an SQS queue receiving every event of a bus through a rule.
type busQueue struct {
	url string
	sqs *sqs.Client
}

func mustBusQueue(tb testing.TB, e *testEnv) *busQueue {
	tb.Helper()
	ctx := context.Background()
	name := devstack.UniqueName("bus-tap-")
	q, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		tb.Fatal(err)
	}
	attrs, err := e.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		tb.Fatal(err)
	}
	bus := e.stack.BusName(devstack.AttributionBusID)
	if _, err := e.eb.PutRule(ctx, &eventbridge.PutRuleInput{
		Name: aws.String(name), EventBusName: aws.String(bus),
		EventPattern: aws.String(`{"source":["` + attribution.EventSource + `"]}`),
	}); err != nil {
		tb.Fatal(err)
	}
	if _, err := e.eb.PutTargets(ctx, &eventbridge.PutTargetsInput{
		Rule: aws.String(name), EventBusName: aws.String(bus),
		Targets: []ebtypes.Target{{Id: aws.String("tap"), Arn: aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)])}},
	}); err != nil {
		tb.Fatal(err)
	}
	return &busQueue{url: aws.ToString(q.QueueUrl), sqs: e.sqs}
}

// busEvent is an EventBridge event as the rule delivers it.
type busEvent struct {
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Detail     json.RawMessage `json:"detail"`
}

// drain receives until the queue stays empty for a moment.
func (q *busQueue) drain(tb testing.TB) []busEvent {
	tb.Helper()
	return drainQueue(tb, q.sqs, q.url, func(body string) busEvent {
		var ev busEvent
		if err := json.Unmarshal([]byte(body), &ev); err != nil {
			tb.Fatalf("bus event %s: %v", body, err)
		}
		return ev
	})
}

func drainQueue[T any](tb testing.TB, client *sqs.Client, url string, decode func(string) T) []T {
	tb.Helper()
	var out []T
	empty := 0
	for empty < 2 {
		got, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, VisibilityTimeout: 60,
		})
		if err != nil {
			tb.Fatal(err)
		}
		if len(got.Messages) == 0 {
			empty++
			time.Sleep(50 * time.Millisecond)
			continue
		}
		empty = 0
		for _, m := range got.Messages {
			out = append(out, decode(aws.ToString(m.Body)))
		}
	}
	return out
}
