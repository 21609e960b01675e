package wiring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/config"
	"decnet-attribution/internal/ddbstore"
	"decnet-attribution/internal/sqshandler"
	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/conformance"
	"decnet-attribution/internal/testrig/devstack"
	"decnet-attribution/internal/wiring"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// env is a provisioned stack with a tap on its bus.
type env struct {
	srv   *awstest.Server
	stack *devstack.Stack
	tap   *awstest.Tap
	store *ddbstore.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := awstest.Moto(t)
	stack := awstest.NewStack(t, srv)
	return &env{
		srv: srv, stack: stack, tap: awstest.NewTap(t, srv, stack),
		store: ddbstore.New(dynamodb.NewFromConfig(srv.Config()), ddbstore.Tables{
			Identities:   stack.TableName(devstack.IdentitiesTableID),
			Observations: stack.TableName(devstack.ObservationsTableID),
			States:       stack.TableName(devstack.StatesTableID),
		}, 0),
	}
}

// handler builds the real handler from the stack's own environment, as the
// Lambda would (a fresh one is a cold instance).
func (e *env) handler(t *testing.T, registry []byte) *sqshandler.Handler {
	t.Helper()
	vars := e.stack.EnvMap()
	if registry != nil {
		vars["ATTRIBUTION_REGISTRY"] = string(registry)
	}
	cfg, err := config.FromEnv(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	h, err := wiring.New(cfg, e.srv.Config(), wiring.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func sqsEvent(batch []json.RawMessage, offset int) events.SQSEvent {
	var ev events.SQSEvent
	for i, m := range batch {
		ev.Records = append(ev.Records, events.SQSMessage{
			MessageId: fmt.Sprintf("msg-%06d", offset+i), Body: string(m), EventSource: "aws:sqs",
			Attributes: map[string]string{"ApproximateReceiveCount": "1"},
		})
	}
	return ev
}

func mustHandle(t *testing.T, h *sqshandler.Handler, ev events.SQSEvent) {
	t.Helper()
	resp, err := h.Handle(context.Background(), ev)
	if err != nil || len(resp.BatchItemFailures) > 0 {
		t.Fatalf("handle: %v, failures %v", err, resp.BatchItemFailures)
	}
}

// records reads the series records of a vector's primitives under the
// attacker's identity.
func (e *env) records(t *testing.T, v conformance.Stream, attacker string) map[string]*attribution.SeriesRecord {
	t.Helper()
	identity, err := e.store.Identity(context.Background(), attacker, "none")
	if err != nil || identity == "none" {
		t.Fatalf("identity of %s: %q, %v", attacker, identity, err)
	}
	recs, err := e.store.LoadSeries(context.Background(), identity, v.Primitives(), true)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// states reads the final states of a vector's attackers from DynamoDB, as
// rows shaped like the vector's expected_states.
func (e *env) states(t *testing.T, v conformance.Stream) []map[string]any {
	t.Helper()
	var rows []map[string]any
	for _, attacker := range v.Attackers() {
		recs := e.records(t, v, attacker)
		for _, p := range v.Primitives() {
			r := recs[p]
			if r == nil || r.Current == nil {
				continue
			}
			value, err := conformance.Decode([]byte(r.Current.CurrentValue))
			if err != nil {
				t.Fatalf("current value %s: %v", r.Current.CurrentValue, err)
			}
			rows = append(rows, map[string]any{
				"attacker_uuid": attacker, "primitive": p, "state": r.Current.State, "current_value": value,
				"confidence": r.Current.Confidence, "observation_count": float64(r.Current.ObservationCount),
				"last_change_ts": r.LastChangeTS, "last_observation_ts": r.Current.LastObservationTS,
			})
		}
	}
	return rows
}

// owed lists the events the records of a vector's attackers still hold as
// not acknowledged.
func (e *env) owed(t *testing.T, v conformance.Stream) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, attacker := range v.Attackers() {
		for _, r := range e.records(t, v, attacker) {
			for _, ev := range r.Pending() {
				out[ev.ID] = true
			}
		}
	}
	return out
}

// eventID is a delivered event's event_id.
func eventID(t *testing.T, ev awstest.BusEvent) string {
	t.Helper()
	var d struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(ev.Detail, &d); err != nil {
		t.Fatal(err)
	}
	return d.EventID
}

// eventRows decodes state_changed details from the tap, sorted by series
// and sequence, and checks every delivery of one event_id is identical.
func eventRows(t *testing.T, delivered []awstest.BusEvent) map[string][]map[string]any {
	t.Helper()
	seen := map[string]string{}
	var rows []map[string]any
	for _, ev := range delivered {
		if ev.DetailType != attribution.EventStateChanged {
			continue
		}
		var d map[string]any
		if err := json.Unmarshal(ev.Detail, &d); err != nil {
			t.Fatal(err)
		}
		id := d["event_id"].(string)
		if prev, dup := seen[id]; dup {
			if prev != string(ev.Detail) {
				t.Errorf("event %s delivered twice with different details", id)
			}
			continue
		}
		seen[id] = string(ev.Detail)
		rows = append(rows, d)
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i]["sequence"].(float64) < rows[j]["sequence"].(float64) })
	return conformance.BySeries(rows)
}

// ofAttackers keeps the events about attackers whose uuid starts with
// prefix.
func ofAttackers(t *testing.T, events []awstest.BusEvent, prefix string) []awstest.BusEvent {
	t.Helper()
	var out []awstest.BusEvent
	for _, ev := range events {
		var d struct {
			AttackerUUID string `json:"attacker_uuid"`
		}
		if err := json.Unmarshal(ev.Detail, &d); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(d.AttackerUUID, prefix) {
			out = append(out, ev)
		}
	}
	return out
}

// newEvents counts the events of again that are not an exact copy (same
// event_id, same detail) of one in delivered.
func newEvents(delivered, again []awstest.BusEvent) int {
	seen := make(map[string]bool, len(delivered))
	for _, ev := range delivered {
		seen[ev.DetailType+"\x00"+string(ev.Detail)] = true
	}
	n := 0
	for _, ev := range again {
		if !seen[ev.DetailType+"\x00"+string(ev.Detail)] {
			n++
		}
	}
	return n
}

func compareEvents(t *testing.T, name string, got map[string][]map[string]any, want []map[string]any) {
	t.Helper()
	wantBySeries := conformance.BySeries(want)
	if len(got) != len(wantBySeries) {
		t.Errorf("%s: events for %d series, want %d", name, len(got), len(wantBySeries))
	}
	for k, w := range wantBySeries {
		if d := conformance.Diff(got[k], w); d != "" {
			t.Errorf("%s: series %s events: %s", name, k, d)
		}
	}
}

// TestConformanceEndToEnd sends every public stream vector through the real
// handler in batches of ten: states are read back from DynamoDB and events
// from an SQS queue fed by an EventBridge rule on the stack's bus. For every
// third vector, every batch is then delivered again to a cold instance:
// nothing changes, and what is published again is exact copies of events
// already delivered (a redelivered observation re-publishes the events it
// caused, with their IDs), never a new event.
func TestConformanceEndToEnd(t *testing.T) {
	vectors, err := conformance.Streams()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	for i, raw := range vectors {
		v, err := raw.Prefix(fmt.Sprintf("v%03d/", i+1))
		if err != nil {
			t.Fatal(err)
		}
		h := e.handler(t, v.RegistryJSON())
		for start := 0; start < len(v.Messages); start += 10 {
			mustHandle(t, h, sqsEvent(v.Messages[start:min(start+10, len(v.Messages))], start))
		}
		name := fmt.Sprintf("vector %d", i+1)
		prefix := fmt.Sprintf("v%03d/", i+1)
		// Exact copies of an earlier vector's events (its own redeliveries)
		// may still be arriving: keep this vector's.
		delivered := ofAttackers(t, e.tap.DrainAtLeast(t, len(v.ExpectedEvents), 30*time.Millisecond), prefix)
		compareEvents(t, name, eventRows(t, delivered), v.ExpectedEvents)
		if d := conformance.Diff(e.states(t, v), v.ExpectedStates); d != "" {
			t.Errorf("%s states: %s", name, d)
		}
		if i%3 != 0 {
			continue // redelivery below: every third vector keeps the suite quick
		}
		// Redeliver every batch to a cold instance: the same states, and
		// again exactly what the records still list as not acknowledged
		// (the bus took it; the series' next commit would say so), as after
		// a crash between the commit and the bus.
		owed := e.owed(t, v)
		cold := e.handler(t, v.RegistryJSON())
		for start := 0; start < len(v.Messages); start += 10 {
			mustHandle(t, cold, sqsEvent(v.Messages[start:min(start+10, len(v.Messages))], start))
		}
		// With amendments, redelivering an older version is a new last
		// write (and the newer one after it another): new events are expected.
		if !hasAmendment(raw) {
			again := ofAttackers(t, e.tap.DrainAtLeast(t, len(owed), 30*time.Millisecond), prefix)
			if n := newEvents(delivered, again); n > 0 {
				t.Errorf("%s: redelivery published %d events that are not exact copies of delivered ones", name, n)
			}
			got := map[string]bool{}
			for _, ev := range again {
				got[eventID(t, ev)] = true
			}
			for id := range owed {
				if !got[id] {
					t.Errorf("%s: redelivery did not publish %s, which its record still lists", name, id)
				}
			}
		}
		if d := conformance.Diff(e.states(t, v), v.ExpectedStates); d != "" {
			t.Errorf("%s states after redelivery: %s", name, d)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

// TestConcurrentInvocationsOnOneIdentity delivers the batches of several
// vectors concurrently, from several handler instances, in shuffled order:
// no update is lost (final states equal the reference) and each series'
// events, deduplicated by event_id, form an unbroken chain.
func TestConcurrentInvocationsOnOneIdentity(t *testing.T) {
	vectors, err := conformance.Streams()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	rng := rand.New(rand.NewPCG(7, 11))
	picked := 0
	for i, raw := range vectors {
		if len(raw.Attackers()) != 1 || hasAmendment(raw) || picked == 6 {
			continue // amendments make "last write" depend on order
		}
		picked++
		v, err := raw.Prefix(fmt.Sprintf("c%03d/", i+1))
		if err != nil {
			t.Fatal(err)
		}
		var batches []events.SQSEvent
		for start := 0; start < len(v.Messages); start += 5 {
			batches = append(batches, sqsEvent(v.Messages[start:min(start+5, len(v.Messages))], start))
		}
		rng.Shuffle(len(batches), func(a, b int) { batches[a], batches[b] = batches[b], batches[a] })
		const instances = 4
		handlers := make([]*sqshandler.Handler, instances)
		for k := range handlers {
			handlers[k] = e.handler(t, v.RegistryJSON())
		}
		var wg sync.WaitGroup
		for k := range instances {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := k; b < len(batches); b += instances {
					for attempt := 0; ; attempt++ {
						resp, err := handlers[k].Handle(context.Background(), batches[b])
						if err == nil && len(resp.BatchItemFailures) == 0 {
							break
						}
						if attempt == 20 {
							t.Errorf("batch still failing after %d attempts: %v %v", attempt, err, resp.BatchItemFailures)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		name := fmt.Sprintf("vector %d", i+1)
		// The final state does not depend on the order of application;
		// last_change_ts does (it dates the last transition), so it is left out.
		want := make([]map[string]any, len(v.ExpectedStates))
		for n, s := range v.ExpectedStates {
			want[n] = map[string]any{}
			for k, val := range s {
				if k != "last_change_ts" {
					want[n][k] = val
				}
			}
		}
		if d := conformance.Diff(e.states(t, v), want); d != "" {
			t.Errorf("%s states: %s", name, d)
		}
		finals := map[string]string{}
		for _, s := range v.ExpectedStates {
			finals[fmt.Sprint(s["attacker_uuid"], "|", s["primitive"])] = s["state"].(string)
		}
		for series, chain := range eventRows(t, e.tap.Drain(t, 300*time.Millisecond)) {
			prev := any(nil)
			for n, ev := range chain {
				if ev["sequence"].(float64) != float64(n+1) || !conformance.SameJSON(ev["old_state"], prev) {
					t.Errorf("%s: series %s: broken chain at %d: %v", name, series, n, ev)
					break
				}
				prev = ev["new_state"]
			}
			if prev != finals[series] {
				t.Errorf("%s: series %s: chain ends in %v, final state is %s", name, series, prev, finals[series])
			}
		}
	}
	if picked == 0 {
		t.Fatal("no vector fits the concurrent scenario")
	}
}

func hasAmendment(v conformance.Stream) bool {
	seen := map[string]string{}
	for _, m := range v.Messages {
		var o struct {
			Ref  string `json:"evidence_ref"`
			Prim string `json:"primitive"`
		}
		_ = json.Unmarshal(m, &o)
		k := o.Ref + "|" + o.Prim
		if prev, ok := seen[k]; ok && prev != string(m) {
			return true
		}
		seen[k] = string(m)
	}
	return false
}
