package attribution_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

func TestDecodeIdentityEvents(t *testing.T) {
	env := func(topic, payload string) string {
		return `{"v":1,"id":"e1","topic":"` + topic + `","type":"` + strings.TrimPrefix(topic, "identity.") + `","ts":1714054176.5,"payload":` + payload + `}`
	}
	stamp := attribution.Stamp{TS: 1714054176.5, ID: "e1"}
	good := []struct {
		name string
		body string
		want attribution.IdentityEvent
	}{
		{"formed", env("identity.formed", `{"identity_uuid":"I","observation_uuids":["b","a","b"]}`),
			attribution.IdentityEvent{Topic: attribution.TopicIdentityFormed, Stamp: stamp, Identity: "I", Attackers: []string{"a", "b"}}},
		{"linked", env("identity.observation.linked", `{"identity_uuid":"I","observation_uuid":"a"}`),
			attribution.IdentityEvent{Topic: attribution.TopicIdentityLinked, Stamp: stamp, Identity: "I", Attackers: []string{"a"}}},
		{"merged", env("identity.merged", `{"winner_uuid":"W","loser_uuid":"L"}`),
			attribution.IdentityEvent{Topic: attribution.TopicIdentityMerged, Stamp: stamp, Winner: "W", Loser: "L"}},
		{"unmerged", env("identity.unmerged", `{"resurrected_uuid":"L","former_winner_uuid":"W"}`),
			attribution.IdentityEvent{Topic: attribution.TopicIdentityUnmerged, Stamp: stamp, Winner: "W", Loser: "L"}},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			d, err := attribution.Decode([]byte(tc.body))
			if err != nil || d.Identity == nil {
				t.Fatalf("decode: %+v, %v", d, err)
			}
			if !reflect.DeepEqual(*d.Identity, tc.want) {
				t.Errorf("got %+v, want %+v", *d.Identity, tc.want)
			}
		})
	}
	if d, err := attribution.Decode([]byte(env("identity.campaign.assigned", `{"identity_uuid":"I","campaign_id":"c"}`))); err != nil || d.Ignored == "" {
		t.Errorf("campaign assignment: %+v, %v; want accepted and ignored", d, err)
	}
	bad := []struct {
		name, body, field, reason string
	}{
		{"unknown identity topic", env("identity.renamed", `{}`), "topic", "not an identity event this service reads"},
		{"type disagrees with topic", `{"v":1,"id":"e","topic":"identity.merged","type":"formed","ts":1,"payload":{}}`, "type", "does not match topic"},
		{"no id", `{"v":1,"topic":"identity.merged","ts":1,"payload":{"winner_uuid":"W","loser_uuid":"L"}}`, "id", "is required"},
		{"no ts", `{"v":1,"id":"e","topic":"identity.merged","payload":{"winner_uuid":"W","loser_uuid":"L"}}`, "ts", "orders identity events"},
		{"ts a string", `{"v":1,"id":"e","topic":"identity.merged","ts":"1","payload":{"winner_uuid":"W","loser_uuid":"L"}}`, "ts", "finite number"},
		{"payload not an object", env("identity.merged", `[1]`), "payload", "JSON object"},
		{"formed without identity", env("identity.formed", `{"observation_uuids":["a"]}`), "payload.identity_uuid", "is required"},
		{"formed without attackers", env("identity.formed", `{"identity_uuid":"I"}`), "payload.observation_uuids", "is required"},
		{"formed with no attacker", env("identity.formed", `{"identity_uuid":"I","observation_uuids":[]}`), "payload.observation_uuids", "at least one"},
		{"formed attackers not an array", env("identity.formed", `{"identity_uuid":"I","observation_uuids":"a"}`), "payload.observation_uuids", "must be an array"},
		{"formed attacker blank", env("identity.formed", `{"identity_uuid":"I","observation_uuids":["a"," "]}`), "payload.observation_uuids[1]", "must not be empty"},
		{"linked attacker a number", env("identity.observation.linked", `{"identity_uuid":"I","observation_uuid":7}`), "payload.observation_uuid", "must be a string"},
		{"merged without loser", env("identity.merged", `{"winner_uuid":"W"}`), "payload.loser_uuid", "is required"},
		{"merged into itself", env("identity.merged", `{"winner_uuid":"W","loser_uuid":"W"}`), "payload.loser_uuid", "cannot merge into itself"},
		{"unmerged without former winner", env("identity.unmerged", `{"resurrected_uuid":"L"}`), "payload.former_winner_uuid", "is required"},
		{"identity named like a record key", env("identity.merged", `{"winner_uuid":"#identity","loser_uuid":"L"}`), "payload.winner_uuid", "must not start with '#'"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := attribution.Decode([]byte(tc.body))
			if attribution.ErrorCode(err) != attribution.EINVALID || attribution.ErrorField(err) != tc.field || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("err = %v (field %q), want invalid %s: …%s…", err, attribution.ErrorField(err), tc.field, tc.reason)
			}
		})
	}
	if _, err := attribution.DecodeMessage([]byte(env("identity.merged", `{"winner_uuid":"W","loser_uuid":"L"}`))); attribution.ErrorCode(err) != attribution.EINVALID {
		t.Errorf("DecodeMessage of an identity event: %v, want invalid", err)
	}
}

// refusingBus refuses every event while down, and keeps what it takes.
type refusingBus struct {
	down     bool
	accepted []attribution.Event
}

func (b *refusingBus) Publish(_ context.Context, events []attribution.Event) error {
	if b.down {
		return errors.New("bus unavailable")
	}
	b.accepted = append(b.accepted, events...)
	return nil
}

// TestRedeliveredIdentityEventPublishesWhatItsChangeLeftPending: the bus
// refuses the events of a membership change (as after a crash between the
// commit and the publish); the redelivered event changes nothing and must
// publish them: the rekeyed event of the stub the attacker came from, and
// the transitions of the series recomputed at the end of the chain.
func TestRedeliveredIdentityEventPublishesWhatItsChangeLeftPending(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	bus := &refusingBus{}
	proc := &attribution.Processor{Store: store, Identities: store, Publisher: bus, Registry: mustTestRegistry(t),
		Thresholds: attribution.DefaultThresholds(), Logger: quietLogger(), Concurrency: 1}
	process := func(body []byte) error { return proc.Process(ctx, []attribution.Message{{ID: "m", Body: body}})[0] }
	for i := range 5 {
		s := spec{Attacker: "a1", Primitive: "motor.input_modality", Ref: fmt.Sprintf("r%d", i), TS: float64(100 + i), Value: `"typed"`, Confidence: 0.9}
		if err := process(s.body()); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range [][]byte{
		busEvent(attribution.TopicIdentityFormed, "e1", 200, `{"identity_uuid":"I2","observation_uuids":["a2"]}`),
		busEvent(attribution.TopicIdentityFormed, "e2", 201, `{"identity_uuid":"I1","observation_uuids":["a3"]}`),
		busEvent(attribution.TopicIdentityMerged, "e3", 202, `{"winner_uuid":"I1","loser_uuid":"I2"}`),
	} {
		if err := process(b); err != nil {
			t.Fatal(err)
		}
	}
	// a1 leaves its stub for I2, merged into I1: the stub is retired and
	// I1's series recomputed.
	linked := busEvent(attribution.TopicIdentityLinked, "e4", 203, `{"identity_uuid":"I2","observation_uuid":"a1"}`)
	bus.down, bus.accepted = true, nil
	if err := process(linked); err == nil {
		t.Fatal("the change's events were refused: the message must fail")
	}
	bus.down = false
	if err := process(linked); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	got := map[string]bool{}
	for _, e := range bus.accepted {
		got[e.DetailType] = true
	}
	if !got[attribution.EventIdentityRekeyed] || !got[attribution.EventStateChanged] {
		t.Errorf("the redelivery published %v; want the rekeyed event and I1's transitions", wants(bus.accepted))
	}
	for id := range store.IdentityRecords() {
		n, err := store.LoadIdentity(ctx, id, true)
		if err != nil {
			t.Fatal(err)
		}
		if p := n.Pending(); len(p) > 0 {
			t.Errorf("identity %s still has %d events pending", id, len(p))
		}
	}
	for _, r := range store.Records() {
		if p := r.Pending(); len(p) > 0 {
			t.Errorf("series %s still has %d events pending", r.Key, len(p))
		}
	}
}

// TestNextMovePublishesWhatThePreviousMoveLeftPending: the bus refuses the
// events of a1's first move (its stub retired into I1), and DECNET moves a1
// again before that event is delivered again; the second move publishes
// the stub's rekeyed event, which the late redelivery (a no-op, no longer
// a1's latest move) could not.
func TestNextMovePublishesWhatThePreviousMoveLeftPending(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	bus := &refusingBus{}
	proc := &attribution.Processor{Store: store, Identities: store, Publisher: bus, Registry: mustTestRegistry(t),
		Thresholds: attribution.DefaultThresholds(), Logger: quietLogger(), Concurrency: 1}
	process := func(body []byte) error { return proc.Process(ctx, []attribution.Message{{ID: "m", Body: body}})[0] }
	s := spec{Attacker: "a1", Primitive: "motor.input_modality", Ref: "r1", TS: 100, Value: `"typed"`, Confidence: 0.9}
	if err := process(s.body()); err != nil {
		t.Fatal(err)
	}
	first := busEvent(attribution.TopicIdentityFormed, "e1", 200, `{"identity_uuid":"I1","observation_uuids":["a1"]}`)
	bus.down = true
	if err := process(first); err == nil {
		t.Fatal("the change's events were refused: the message must fail")
	}
	bus.down = false
	if err := process(busEvent(attribution.TopicIdentityLinked, "e2", 201, `{"identity_uuid":"I2","observation_uuid":"a1"}`)); err != nil {
		t.Fatal(err)
	}
	stub := attribution.StubIdentityID("a1")
	n, err := store.LoadIdentity(ctx, stub, true)
	if err != nil {
		t.Fatal(err)
	}
	if n.Rekeys != 1 || len(n.Pending()) != 0 {
		t.Errorf("stub: %d rekeyed events, %d still pending after a1's next move", n.Rekeys, len(n.Pending()))
	}
	published := 0
	for _, e := range bus.accepted {
		if e.ID == attribution.EventID(attribution.EventIdentityRekeyed, stub, 1) {
			published++
		}
	}
	if published != 1 {
		t.Errorf("the stub's rekeyed event was published %d times, want once", published)
	}
}

// TestMergeCountsTheLosersInlineObservations: a merge moves the loser's
// attackers to the winner, whose series are recomputed from their
// observation items; those the loser's records still hold inline (never
// written as items yet) are written first, so the union counts them.
func TestMergeCountsTheLosersInlineObservations(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	p := &attribution.Processor{Store: store, Identities: store, Publisher: &recorder{},
		Registry: attribution.BuiltinRegistry(), Thresholds: attribution.DefaultThresholds(), Logger: quietLogger()}
	event := func(id, topic string, ts float64, payload string) attribution.Message {
		body := fmt.Sprintf(`{"v":1,"id":%q,"topic":%q,"type":%q,"ts":%v,"payload":%s}`, id, topic, strings.TrimPrefix(topic, "identity."), ts, payload)
		return attribution.Message{ID: id, Body: []byte(body)}
	}
	obs := func(attacker, ref string, ts float64) attribution.Message {
		s := spec{Attacker: attacker, Primitive: "motor.input_modality", Ref: ref, TS: ts, Value: `"typed"`}
		return attribution.Message{ID: attacker + ref, Body: s.body()}
	}
	batches := [][]attribution.Message{
		{event("e1", attribution.TopicIdentityFormed, 1, `{"identity_uuid":"W","observation_uuids":["att-w"]}`),
			event("e2", attribution.TopicIdentityFormed, 2, `{"identity_uuid":"L","observation_uuids":["att-l"]}`)},
		{obs("att-w", "w1", 10), obs("att-l", "l1", 11), obs("att-l", "l2", 12)},
		{event("e3", attribution.TopicIdentityMerged, 20, `{"winner_uuid":"W","loser_uuid":"L"}`)},
	}
	for i, b := range batches {
		for j, err := range p.Process(ctx, b) {
			if err != nil {
				t.Fatalf("batch %d, message %d: %v", i, j, err)
			}
		}
	}
	loser, err := store.LoadSeries(ctx, "L", []string{"motor.input_modality"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if rec := loser["motor.input_modality"]; rec == nil || len(rec.Inline) != 0 {
		t.Fatalf("the loser's record still holds observations inline: %+v", rec)
	}
	winner, err := store.LoadSeries(ctx, "W", []string{"motor.input_modality"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if rec := winner["motor.input_modality"]; rec == nil || rec.Current == nil || rec.Current.ObservationCount != 3 {
		t.Fatalf("the winner's series counts %+v, want the 3 observations of both attackers", rec)
	}
}
