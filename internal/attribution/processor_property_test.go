package attribution_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

// runMode is one way of feeding a stream to the processor.
type runMode struct {
	name  string
	batch bool // random batches of 1–100 messages, else one per call
	full  bool // FullRecompute
}

var runModes = []runMode{
	{name: "single"},
	{name: "batched", batch: true},
	{name: "full", full: true},
	{name: "full-batched", batch: true, full: true},
}

type runResult struct {
	store  *memstore.Store
	events []recorded
}

// mustRun processes a stream in arrival order and fails on any message
// error: every generated message is valid and nothing is injected.
func mustRun(tb testing.TB, mode runMode, reg attribution.Registry, th attribution.Thresholds, bodies [][]byte, seed uint64) runResult {
	tb.Helper()
	store := memstore.New()
	pub := &recorder{}
	p := newProcessor(store, pub, reg, th)
	p.FullRecompute = mode.full
	rng := rand.New(rand.NewPCG(seed, 99))
	msgs := messages(bodies)
	for i := 0; i < len(msgs); {
		n := 1
		if mode.batch {
			n = min(len(msgs)-i, 1+rng.IntN(100))
		}
		for j, err := range p.Process(context.Background(), msgs[i:i+n]) {
			if err != nil {
				tb.Fatalf("%s: message %d: %v", mode.name, i+j, err)
			}
		}
		i += n
	}
	return runResult{store: store, events: pub.events()}
}

// TestProcessorModesAgree streams random observations (several attackers,
// primitives of every kind, redeliveries, amendments, out-of-order
// arrival, values equal as values but not as JSON text) through the
// processor one message per call, in random batches and with
// FullRecompute. Every way must first publish, per series and in
// order, exactly the events the written rules give, and leave the same
// records; a redelivered message may only publish exact copies again.
func TestProcessorModesAgree(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	prims := slices.Concat(catPrimitives, numPrimitives, hashPrimitives)
	for stream := range 10 {
		t.Run(fmt.Sprintf("stream%02d", stream), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(uint64(stream), 7))
			bodies := genStream(rng, reg, streamOpts{
				Attackers:  1 + rng.IntN(3),
				MaxLen:     4 + rng.IntN(16),
				Redeliver:  0.05 + 0.15*rng.Float64(),
				Amend:      0.04 * rng.Float64(),
				Primitives: prims,
				Shuffle:    float64(rng.IntN(3)) * 2000,
				Equality:   stream >= 6, // values equal as values, not as JSON
			})
			want := mustOracle(t, reg, th, bodies)
			var first map[attribution.SeriesKey]recordSummary
			for _, mode := range runModes {
				res := mustRun(t, mode, reg, th, bodies, uint64(stream))
				diffEvents(t, mode.name, bySeries(t, res.events), want.events)
				checkRecords(t, mode.name, res.store, want)
				got := summaries(res.store)
				if first == nil {
					first = got
				} else if fmt.Sprint(got) != fmt.Sprint(first) {
					t.Errorf("%s: final records differ from %s", mode.name, runModes[0].name)
				}
			}
		})
	}
}

// TestProcessorMultiActorSuspected builds identities whose categorical
// primitives alternate A/B and settle again, so they enter and leave
// multi_actor; the suspicion must fire once per changed set of at least
// two, re-arm below two, and not depend on batching.
func TestProcessorMultiActorSuspected(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	var mu sync.Mutex
	total := 0
	t.Cleanup(func() {
		if total < 15 {
			t.Errorf("the streams raised only %d suspicions; they do not exercise the rule", total)
		}
	})
	for stream := range 8 {
		t.Run(fmt.Sprintf("stream%02d", stream), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(uint64(stream), 11))
			bodies := genStream(rng, reg, streamOpts{
				Attackers:   1 + rng.IntN(3),
				MaxLen:      12 + rng.IntN(20),
				Redeliver:   0.05 + 0.15*rng.Float64(),
				Primitives:  catPrimitives[:2+rng.IntN(2)],
				Alternating: true,
				Shuffle:     float64(rng.IntN(2)) * 1200,
			})
			want := mustOracle(t, reg, th, bodies)
			mu.Lock()
			total += want.suspicionCount()
			mu.Unlock()
			for _, mode := range runModes {
				res := mustRun(t, mode, reg, th, bodies, uint64(stream))
				diffEvents(t, mode.name, bySeries(t, res.events), want.events)
				checkRecords(t, mode.name, res.store, want)
				checkSuspicionRule(t, mode.name, res.events, th)
			}
		})
	}
}

// checkSuspicionRule checks what holds of the published events whatever
// the batching, the writers and the failed publishes. Each event ID stands
// for one event: a repeat must be an exact redelivery. Publication order is
// not promised, so chains are read as consumers read them, by sequence: per
// series, sequences run 1, 2, … without gaps and each old_state is the
// previous new_state; per identity, suspicions run 1, 2, … over sorted sets
// of at least the minimum. (Which sets fire is the oracle's to check.)
func checkSuspicionRule(tb testing.TB, name string, events []recorded, th attribution.Thresholds) {
	tb.Helper()
	perSeries := make(map[attribution.SeriesKey][]attribution.StateChanged)
	suspicions := make(map[string][]attribution.MultiActorSuspected)
	for _, r := range firstDeliveries(tb, events) {
		switch r.Event.DetailType {
		case attribution.EventStateChanged:
			var d attribution.StateChanged
			if err := json.Unmarshal(r.Event.Detail, &d); err != nil {
				tb.Fatal(err)
			}
			k := attribution.SeriesKey{IdentityUUID: d.IdentityUUID, Primitive: d.Primitive}
			perSeries[k] = append(perSeries[k], d)
		case attribution.EventMultiActorSuspected:
			var d attribution.MultiActorSuspected
			if err := json.Unmarshal(r.Event.Detail, &d); err != nil {
				tb.Fatal(err)
			}
			suspicions[d.IdentityUUID] = append(suspicions[d.IdentityUUID], d)
		}
	}
	for k, list := range perSeries {
		slices.SortFunc(list, func(a, b attribution.StateChanged) int { return cmp.Compare(a.Sequence, b.Sequence) })
		for i, d := range list {
			if d.Sequence != int64(i+1) {
				tb.Errorf("%s: %s: event %d by sequence has sequence %d", name, k, i, d.Sequence)
			}
			if (i == 0) != (d.OldState == nil) || i > 0 && *d.OldState != list[i-1].NewState {
				tb.Errorf("%s: %s: event %d old_state %s does not follow %s", name, k, i, stateWord(d.OldState), list[max(i-1, 0)].NewState)
			}
		}
	}
	for identity, list := range suspicions {
		slices.SortFunc(list, func(a, b attribution.MultiActorSuspected) int { return cmp.Compare(a.Sequence, b.Sequence) })
		for i, s := range list {
			if s.Sequence != int64(i+1) {
				tb.Errorf("%s: identity %s: suspicion %d has sequence %d", name, identity, i, s.Sequence)
			}
			if len(s.Primitives) < th.MultiActorMinPrimitives || !slices.IsSorted(s.Primitives) {
				tb.Errorf("%s: identity %s: suspicion %d primitives %v", name, identity, i, s.Primitives)
			}
			if s.EvidenceSummary != fmt.Sprintf("%d primitives flagged multi_actor", len(s.Primitives)) || s.Confidence != 0.6 {
				tb.Errorf("%s: identity %s: suspicion %d: %+v", name, identity, i, s)
			}
		}
	}
}

func stateWord(s *string) string {
	if s == nil {
		return "null"
	}
	return *s
}

// TestProcessorSuspicionScenario walks one identity through the rule by
// hand: {a,b} fires, {a,b,c} fires, back to {a,b} fires (changed, still
// two), {a} re-arms silently, {a,b} fires again.
func TestProcessorSuspicionScenario(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	a, b, c := "cognitive.command_planning", "environmental.locale", "motor.input_modality"
	var bodies [][]byte
	ts := 1.7e9
	n := map[string]int{}
	feed := func(prim string, values ...string) {
		for _, v := range values {
			ts += 10
			n[prim]++
			bodies = append(bodies, spec{Attacker: "att-x", Primitive: prim, Ref: fmt.Sprintf("s%03d", n[prim]), TS: ts, Value: v, Confidence: 0.9}.body())
		}
	}
	alt := []string{`"A"`, `"B"`, `"A"`, `"B"`, `"A"`}
	feed(a, alt...) // a: multi_actor
	feed(b, alt...) // b: multi_actor → {a,b}
	feed(c, alt...) // c: multi_actor → {a,b,c}
	feed(c, `"A"`, `"A"`, `"A"`, `"A"`, `"A"`)
	feed(b, `"A"`, `"A"`, `"A"`, `"A"`, `"A"`)
	feed(b, `"B"`, `"A"`, `"B"`, `"A"`, `"B"`)
	wantSets := [][]string{{b, a}, {b, a, c}, {b, a}, {b, a}}
	for _, s := range wantSets {
		slices.Sort(s)
	}
	want := mustOracle(t, reg, th, bodies)
	for _, mode := range runModes {
		t.Run(mode.name, func(t *testing.T) {
			res := mustRun(t, mode, reg, th, bodies, 1)
			// Consumers order suspicions by sequence: compare in that
			// order. The stream has no redelivery, so no repeat either.
			var list []attribution.MultiActorSuspected
			for _, r := range res.events {
				if r.Event.DetailType != attribution.EventMultiActorSuspected {
					continue
				}
				var d attribution.MultiActorSuspected
				if err := json.Unmarshal(r.Event.Detail, &d); err != nil {
					t.Fatal(err)
				}
				list = append(list, d)
			}
			slices.SortFunc(list, func(a, b attribution.MultiActorSuspected) int { return int(a.Sequence - b.Sequence) })
			var sets [][]string
			for _, d := range list {
				sets = append(sets, d.Primitives)
			}
			if fmt.Sprint(sets) != fmt.Sprint(wantSets) {
				t.Fatalf("suspected sets %v, want %v", sets, wantSets)
			}
			diffEvents(t, mode.name, bySeries(t, res.events), want.events)
			checkRecords(t, mode.name, res.store, want)
		})
	}
}

// TestProcessorUpgradesFromTheTransactionalDesign: a store written by the
// transactional design (observation items, records holding nothing inline)
// keeps working when the incremental design takes over halfway through a
// stream that redelivers and amends (its redeliveries and amendments of
// the first half's observations reach the second): the events and records
// are those of the written rules.
func TestProcessorUpgradesFromTheTransactionalDesign(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	prims := slices.Concat(catPrimitives, numPrimitives, hashPrimitives)
	for stream := range 6 {
		t.Run(fmt.Sprintf("stream%02d", stream), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(stream), 31))
			bodies := genStream(rng, reg, streamOpts{
				Attackers: 1 + rng.IntN(3), MaxLen: 6 + rng.IntN(20), Redeliver: 0.2, Amend: 0.04,
				Primitives: prims,
			})
			want := mustOracle(t, reg, th, bodies)
			store := memstore.New()
			pub := &recorder{}
			msgs := messages(bodies)
			half := len(msgs) / 2
			before := newProcessor(store, pub, reg, th)
			before.Design = attribution.Transactional
			after := newProcessor(store, pub, reg, th)
			for i, m := range msgs {
				p := after
				if i < half {
					p = before
				}
				if err := p.Process(context.Background(), []attribution.Message{m})[0]; err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
			}
			diffEvents(t, "upgrade", bySeries(t, pub.events()), want.events)
			checkRecords(t, "upgrade", store, want)
		})
	}
}
