package attribution_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

// downBus accepts nothing while down.
type downBus struct {
	down      bool
	delivered []attribution.Event
}

func (b *downBus) Publish(_ context.Context, evs []attribution.Event) error {
	if b.down {
		failed := make([]attribution.FailedEvent, len(evs))
		for i, e := range evs {
			failed[i] = attribution.FailedEvent{Event: e, Code: "InternalFailure", Retryable: true}
		}
		return &attribution.PublishError{Failed: failed}
	}
	b.delivered = append(b.delivered, evs...)
	return nil
}

// TestProcessorWhileTheBusIsDown: a series keeps changing state while the
// bus refuses every event, far past MaxPendingEvents transitions. Every
// message of the series fails while its outbox holds events the bus did
// not take; the state advances until MaxPendingEvents are pending, then
// new observations wait (the queue delivers them again) so that the record
// stays bounded. When the bus is back, redelivering the failed messages in
// order publishes exactly the events of a clean run, in order.
func TestProcessorWhileTheBusIsDown(t *testing.T) {
	th := attribution.DefaultThresholds()
	th.Window, th.MinObservations, th.CategoricalMajority = 1, 1, 1 // every value change is a transition
	reg := attribution.BuiltinRegistry()
	store := memstore.New()
	bus := &downBus{down: true}
	proc := &attribution.Processor{Store: store, Identities: store, Publisher: bus,
		Registry: reg, Thresholds: th, Logger: quietLogger()}
	var bodies [][]byte
	for i := range 3 * attribution.MaxPendingEvents {
		body, _ := json.Marshal(map[string]any{
			"attacker_uuid": "att-1", "primitive": "motor.input_modality", "evidence_ref": fmt.Sprintf("s%03d", i),
			"ts": float64(i), "value": []string{"typed", "pasted"}[i/2%2],
		})
		bodies = append(bodies, body)
	}
	want := mustOracle(t, reg, th, bodies)
	msgs := messages(bodies)
	var failed []attribution.Message
	applied := 0
	for i, m := range msgs {
		err := proc.Process(context.Background(), []attribution.Message{m})[0]
		switch {
		case err == nil:
			t.Fatalf("message %d succeeded, though the bus took none of its series' events", i)
		case attribution.ErrorCode(err) == attribution.EINVALID:
			t.Fatalf("message %d: %v, not worth retrying", i, err)
		}
		failed = append(failed, m)
		r := mustRecord(t, store, attribution.SeriesKey{IdentityUUID: attribution.StubIdentityID("att-1"), Primitive: "motor.input_modality"})
		if r.Series.Count > applied {
			applied = r.Series.Count
		}
		if n := len(r.Pending()); n > attribution.MaxPendingEvents {
			t.Fatalf("after message %d: %d events pending, more than %d", i, n, attribution.MaxPendingEvents)
		}
	}
	if applied == len(msgs) || applied == 0 || len(bus.delivered) > 0 {
		t.Fatalf("%d of %d observations applied, %d events delivered: the outbox bound did not hold observations back", applied, len(msgs), len(bus.delivered))
	}
	// The bus is back: the queue delivers the failed messages again.
	bus.down = false
	for _, m := range failed {
		if err := proc.Process(context.Background(), []attribution.Message{m})[0]; err != nil {
			t.Fatalf("message %s, redelivered: %v", m.ID, err)
		}
	}
	key := attribution.SeriesKey{IdentityUUID: attribution.StubIdentityID("att-1"), Primitive: "motor.input_modality"}
	if got := wants(bus.delivered); !slices.Equal(got, want.events[key]) {
		t.Fatalf("published %d events, want the %d of a clean run, in order", len(got), len(want.events[key]))
	}
	checkRecords(t, "bus down", store, want)
}

// TestProcessorPublishesRebuildOutbox: a rebuild settles a new state that
// no observation carries, so its state_changed event waits in the series'
// outbox. The next message of the series publishes it: while the bus
// refuses it, the message fails (even though its own observation caused
// no event) and the event stays pending; its redelivery publishes it with
// the same ID and detail and acknowledges it, so that it is not published
// again at the next touch.
func TestProcessorPublishesRebuildOutbox(t *testing.T) {
	loose := attribution.DefaultThresholds()
	strict := loose
	strict.CategoricalMajority = 5
	reg := attribution.BuiltinRegistry()
	prim := "motor.input_modality"
	key := attribution.SeriesKey{IdentityUUID: attribution.StubIdentityID("att-1"), Primitive: prim}
	message := func(i int, value string) []attribution.Message {
		s := spec{Attacker: "att-1", Primitive: prim, Ref: fmt.Sprintf("ref-%03d", i), TS: 1000 + 60*float64(i), Value: value, Confidence: 0.9}
		return []attribution.Message{{ID: s.Ref, Body: s.body()}}
	}
	ctx := context.Background()
	store := memstore.New()
	before := &recorder{}
	proc := newProcessor(store, before, reg, loose)
	for i, v := range []string{`"typed"`, `"typed"`, `"pasted"`, `"typed"`, `"typed"`} {
		if err := proc.Process(ctx, message(i, v))[0]; err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}

	// The rebuild, as after a change of thresholds: stable → conflicted.
	// The bus took everything so far (the series' next commit would say so).
	if err := store.Ack(ctx, key, mustRecord(t, store, key).NextPosition); err != nil {
		t.Fatal(err)
	}
	rec := mustRecord(t, store, key)
	obs, err := store.StoredObservations(key), error(nil)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := rec.Rebuild(attribution.Categorical, obs, strict)
	if err != nil || ev == nil || ev.NewState != attribution.StateConflicted || len(rec.Pending()) != 1 {
		t.Fatalf("rebuild: event %+v, %d pending (%v); want a transition to conflicted in the outbox", ev, len(rec.Pending()), err)
	}
	queued := rec.Pending()[0]
	if err := store.Commit(ctx, &attribution.Commit{Series: []*attribution.SeriesRecord{rec}}); err != nil {
		t.Fatal(err)
	}

	bus := &switchPublisher{fail: true}
	proc = newProcessor(store, bus, reg, strict)
	next := message(5, `"typed"`)
	if err := proc.Process(ctx, next)[0]; err == nil || attribution.ErrorCode(err) == attribution.EINVALID {
		t.Fatalf("first delivery: %v (code %q), want a retryable failure: the outbox event did not go out", err, attribution.ErrorCode(err))
	}
	if r := mustRecord(t, store, key); r.Series.Count != 6 || r.Transitions != ev.Sequence || !slices.Equal(wants(r.Pending()), wants([]attribution.Event{queued})) {
		t.Fatalf("after the failed delivery: count %d, %d transitions, pending %v; want 6, %d (this observation changes no state) and the rebuild's event", r.Series.Count, r.Transitions, wants(r.Pending()), ev.Sequence)
	}
	bus.fail = false
	if err := proc.Process(ctx, next)[0]; err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	if got := wants(bus.accepted); !slices.Equal(got, wants([]attribution.Event{queued})) {
		t.Fatalf("redelivery published %v, want the rebuild's event %v", got, asWant(queued))
	}
	if r := mustRecord(t, store, key); len(r.Pending()) != 0 || r.Published != queued.Position {
		t.Fatalf("after the redelivery: %d pending, acknowledged up to %d; want the rebuild's event acknowledged (%d)", len(r.Pending()), r.Published, queued.Position)
	}

	// The next touch, by a new processor: the acknowledged event stays put.
	n := len(bus.accepted)
	if err := newProcessor(store, bus, reg, strict).Process(ctx, message(6, `"typed"`))[0]; err != nil {
		t.Fatalf("next message: %v", err)
	}
	if slices.ContainsFunc(bus.accepted[n:], func(e attribution.Event) bool { return e.ID == queued.ID }) {
		t.Errorf("the acknowledged rebuild event was published again")
	}
	all := append(before.events(), recordedOf(bus.accepted)...)
	checkSuspicionRule(t, "rebuild", all, strict)
	checkEveryTransitionPublished(t, "rebuild", store, all)
}

func mustRecord(tb testing.TB, store *memstore.Store, key attribution.SeriesKey) *attribution.SeriesRecord {
	tb.Helper()
	recs, err := store.LoadSeries(context.Background(), key.IdentityUUID, []string{key.Primitive}, true)
	if err != nil || recs[key.Primitive] == nil {
		tb.Fatalf("load %s: %v", key, err)
	}
	return recs[key.Primitive]
}

func recordedOf(events []attribution.Event) []recorded {
	out := make([]recorded, len(events))
	for i, e := range events {
		out[i] = recorded{Event: e}
	}
	return out
}

// TestProcessorAmendmentCarriesUnpublishedEvents: an observation's event
// is refused by the bus, then an amendment replaces the observation before
// the first message comes back. The refused event must not vanish with the
// replaced item: the amendment carries it and publishes it with its own,
// and the first message's late redelivery (now an amendment in turn)
// publishes nothing new.
func TestProcessorAmendmentCarriesUnpublishedEvents(t *testing.T) {
	th := attribution.DefaultThresholds()
	reg := attribution.BuiltinRegistry()
	store := memstore.New()
	bus := &downBus{down: true}
	proc := &attribution.Processor{Store: store, Identities: store, Publisher: bus,
		Registry: reg, Thresholds: th, Logger: quietLogger()}
	first := spec{Attacker: "att-1", Primitive: "motor.input_modality", Ref: "s1", TS: 10, Value: `"typed"`}
	amended := first
	amended.Value = `"pasted"`
	msgs := messages([][]byte{first.body(), amended.body()})

	if err := proc.Process(context.Background(), msgs[:1])[0]; err == nil {
		t.Fatal("the first observation's event was refused, yet its message succeeded")
	}
	bus.down = false
	if err := proc.Process(context.Background(), msgs[1:])[0]; err != nil {
		t.Fatalf("amendment: %v", err)
	}
	var sequences []int64
	for _, e := range bus.delivered {
		var d attribution.StateChanged
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			t.Fatal(err)
		}
		sequences = append(sequences, d.Sequence)
	}
	recs := store.Records()
	if len(recs) != 1 || recs[0].Transitions != int64(len(sequences)) || !slices.Equal(sequences, []int64{1}) {
		// The amendment of a lone observation keeps the state word, so the
		// one transition is the first observation's.
		t.Fatalf("published sequences %v; the record counts %d transitions", sequences, recs[0].Transitions)
	}
	before := len(bus.delivered)
	if err := proc.Process(context.Background(), msgs[:1])[0]; err != nil {
		t.Fatalf("late redelivery of the first message: %v", err)
	}
	for _, e := range bus.delivered[before:] {
		if e.ID != bus.delivered[0].ID {
			t.Errorf("late redelivery published a new event %s", e.ID)
		}
	}
}
