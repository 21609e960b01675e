package attribution_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// TestOutboxIsBoundedWhileTheBusIsDown: a series that keeps changing state
// while the bus refuses events holds new observations back once its outbox
// is full, and loses nothing: when the bus is back, redelivery publishes
// every transition once, in sequence order.
func TestOutboxIsBoundedWhileTheBusIsDown(t *testing.T) {
	th := attribution.DefaultThresholds()
	th.Window, th.MinObservations, th.CategoricalMajority = 1, 1, 1 // every value change is a transition
	store := memstore.New()
	bus := &downBus{down: true}
	proc := &attribution.Processor{Store: store, Identities: store, Publisher: bus,
		Registry: attribution.BuiltinRegistry(), Thresholds: th}
	var msgs []attribution.Message
	for i := range 3 * attribution.MaxPendingEvents {
		body, _ := json.Marshal(map[string]any{
			"attacker_uuid": "att-1", "primitive": "motor.input_modality", "evidence_ref": fmt.Sprintf("s%03d", i),
			"ts": float64(i), "value": []string{"typed", "pasted"}[i/2%2],
		})
		msgs = append(msgs, attribution.Message{ID: fmt.Sprint(i), Body: body})
	}
	deferred := 0
	for _, m := range msgs {
		err := proc.Process(context.Background(), []attribution.Message{m})[0]
		if attribution.ErrorCode(err) == attribution.ECONFLICT {
			deferred++
		}
	}
	recs := store.Records()
	if len(recs) != 1 || len(recs[0].Outbox) > attribution.MaxPendingEvents {
		t.Fatalf("outbox grew to %d events, bound is %d", len(recs[0].Outbox), attribution.MaxPendingEvents)
	}
	if deferred == 0 {
		t.Fatal("no observation was held back while the outbox was full")
	}
	// The bus is back: the queue delivers everything again.
	bus.down = false
	for range 4 {
		for _, m := range msgs {
			if err := proc.Process(context.Background(), []attribution.Message{m})[0]; err != nil && !errors.Is(err, context.Canceled) && attribution.ErrorCode(err) != attribution.ECONFLICT {
				t.Fatal(err)
			}
		}
	}
	final := store.Records()[0]
	if final.Series.Count != len(msgs) {
		t.Fatalf("count %d, want %d", final.Series.Count, len(msgs))
	}
	if int64(len(bus.delivered)) != final.Transitions {
		t.Fatalf("delivered %d events, the series made %d transitions", len(bus.delivered), final.Transitions)
	}
	for i, e := range bus.delivered {
		var d attribution.StateChanged
		if err := json.Unmarshal(e.Detail, &d); err != nil || d.Sequence != int64(i+1) {
			t.Fatalf("event %d has sequence %d (%v)", i, d.Sequence, err)
		}
	}
}
