package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/testrig/awstest"
)

// The harness must fail a run when the function misbehaves: these tests
// break the function in process, one way each, and expect the verdict that
// names the breakage.

func sabotageScenario(name string) Scenario {
	return Scenario{
		Name: name, Pollers: 1,
		Stream: StreamConfig{Seed: 21, Observations: 40, Attackers: 4, Hot: 2, HotShare: 0.7, Duplicates: 0.2, Malformed: 2, ShuffleWindow: 10},
	}
}

// runSabotaged runs the scenarios at once and returns their verdicts, each
// of which must fail.
func runSabotaged(t *testing.T, scenarios ...Scenario) []Verdicts {
	t.Helper()
	env := Env{Endpoint: awstest.Moto(t).Endpoint, Template: awstest.Template(t), WorkDir: t.TempDir()}
	if err := Warm(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	reports := make([]*Report, len(scenarios))
	errs := make([]error, len(scenarios))
	var wg sync.WaitGroup
	for i, sc := range scenarios {
		wg.Go(func() { reports[i], errs[i] = Run(context.Background(), env, sc) })
	}
	wg.Wait()
	out := make([]Verdicts, len(scenarios))
	for i, rep := range reports {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		var b strings.Builder
		rep.Write(&b)
		t.Log("\n" + b.String())
		if rep.OK() {
			t.Errorf("%s: a broken function passed every verdict", scenarios[i].Name)
		}
		out[i] = rep.Verdicts
	}
	return out
}

// dropping publishes only some events and reports success.
type dropping struct {
	attribution.Publisher
	mu sync.Mutex
	n  int
}

func (d *dropping) Publish(ctx context.Context, events []attribution.Event) error {
	d.mu.Lock()
	var kept []attribution.Event
	for _, e := range events {
		if d.n++; d.n%4 != 0 {
			kept = append(kept, e)
		}
	}
	d.mu.Unlock()
	if len(kept) == 0 {
		return nil
	}
	return d.Publisher.Publish(ctx, kept)
}

// forgetful loses what records hold of their observations, so that a
// redelivered one looks new: commits drop the records' inline
// observations (the processor's cache keeps what it committed, so it
// forgets too), lookups find nothing.
type forgetful struct{ attribution.Store }

func (f forgetful) Commit(ctx context.Context, c *attribution.Commit) error {
	for _, r := range c.Series {
		r.Inline, r.Complete = nil, false
	}
	return f.Store.Commit(ctx, c)
}

func (f forgetful) LookupObservations(context.Context, []attribution.ObservationRef) (map[attribution.ObservationRef]attribution.StoredObservation, error) {
	return nil, nil
}

// renumbering publishes every transition a second time under a new ID.
type renumbering struct{ attribution.Publisher }

func (r renumbering) Publish(ctx context.Context, events []attribution.Event) error {
	out := append([]attribution.Event(nil), events...)
	for _, e := range events {
		var d map[string]any
		if e.DetailType != attribution.EventStateChanged || json.Unmarshal(e.Detail, &d) != nil {
			continue
		}
		sum := sha256.Sum256([]byte(e.ID + "again"))
		d["event_id"] = hex.EncodeToString(sum[:16])
		e.ID = d["event_id"].(string)
		e.Detail = json.RawMessage(mustJSON(d))
		out = append(out, e)
	}
	return r.Publisher.Publish(ctx, out)
}

// TestVerdictsCatchSabotage breaks the function three ways: it drops
// events, counts redeliveries again, and re-sends transitions under new
// IDs; each must show in its verdict.
func TestVerdictsCatchSabotage(t *testing.T) {
	t.Parallel()
	lost, double, newIDs := sabotageScenario("sabotage-lost"), sabotageScenario("sabotage-double"), sabotageScenario("sabotage-new-ids")
	lost.sabotagePublisher = func(p attribution.Publisher) attribution.Publisher { return &dropping{Publisher: p} }
	double.sabotageStore = func(s attribution.Store) attribution.Store { return forgetful{s} }
	newIDs.sabotagePublisher = func(p attribution.Publisher) attribution.Publisher { return renumbering{p} }
	v := runSabotaged(t, lost, double, newIDs)
	if v[0].Lost == 0 {
		t.Errorf("events dropped, lost=%d", v[0].Lost)
	}
	if v[1].DoubleCounted == 0 {
		t.Errorf("redeliveries counted again, double_counted=%d", v[1].DoubleCounted)
	}
	if v[2].DuplicateEventsWithNewID == 0 {
		t.Errorf("transitions re-sent under new IDs, duplicate_events_with_new_id=%d", v[2].DuplicateEventsWithNewID)
	}
}
