package attribution_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

// rebuildObs builds the observations of one categorical series from values,
// one minute apart.
func rebuildObs(attacker, primitive string, values ...string) []attribution.Observation {
	out := make([]attribution.Observation, len(values))
	for i, v := range values {
		out[i] = attribution.Observation{
			Primitive:    primitive,
			Value:        attribution.Value(fmt.Sprintf("%q", v)),
			EvidenceRef:  fmt.Sprintf("ref-%03d", i),
			TS:           1000 + 60*float64(i),
			AttackerUUID: attacker,
		}
	}
	return out
}

// mustProcessStream runs bodies through a processor over a fresh memstore.
func mustProcessStream(tb testing.TB, bodies [][]byte, reg attribution.Registry, th attribution.Thresholds) *memstore.Store {
	tb.Helper()
	store := memstore.New()
	p := &attribution.Processor{
		Store: store, Identities: store, Publisher: nopPublisher{},
		Registry: reg, Thresholds: th, Concurrency: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for i, b := range bodies {
		if err := p.Process(context.Background(), []attribution.Message{{ID: fmt.Sprint(i), Body: b}})[0]; err != nil {
			tb.Fatalf("message %d: %v", i, err)
		}
	}
	return store
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, []attribution.Event) error { return nil }

func TestRebuildAfterThresholdChange(t *testing.T) {
	loose := attribution.DefaultThresholds()
	strict := loose
	strict.CategoricalMajority = 5
	obs := rebuildObs("att-1", "motor.input_modality", "typed", "typed", "pasted", "typed", "typed")
	key := attribution.SeriesKey{IdentityUUID: "id-1", Primitive: "motor.input_modality"}

	rec := attribution.NewSeriesRecord(key, attribution.Categorical, loose)
	if ev, err := rec.Rebuild(attribution.Categorical, obs, loose); err != nil || ev == nil || ev.NewState != attribution.StateStable || ev.OldState != nil {
		t.Fatalf("first rebuild: event %+v, error %v; want a first transition to stable", ev, err)
	}
	if rec.LastChangeTS != 1240 || rec.Current.ObservationCount != 5 || rec.Transitions != 1 || len(rec.Outbox) != 1 {
		t.Fatalf("record after first rebuild: %+v", rec)
	}

	// Same thresholds again: nothing changes, nothing is queued.
	again := rec.Clone()
	if ev, err := again.Rebuild(attribution.Categorical, obs, loose); err != nil || ev != nil {
		t.Fatalf("rebuild with the same thresholds: event %+v, error %v; want neither", ev, err)
	}
	if again.Transitions != 1 || len(again.Outbox) != 1 || *again.Current != *rec.Current {
		t.Fatalf("rebuild with the same thresholds changed the record: %+v", again)
	}

	// A stricter majority: 4 of 5 no longer clear, and no alternation.
	ev, err := rec.Rebuild(attribution.Categorical, obs, strict)
	if err != nil {
		t.Fatal(err)
	}
	if ev == nil || ev.OldState == nil || *ev.OldState != attribution.StateStable || ev.NewState != attribution.StateConflicted {
		t.Fatalf("stricter rebuild: event %+v; want stable → conflicted", ev)
	}
	if ev.Sequence != 2 || rec.Transitions != 2 || len(rec.Outbox) != 2 || rec.Outbox[1].ID != ev.EventID {
		t.Fatalf("stricter rebuild: sequence %d, record %+v", ev.Sequence, rec)
	}
	if !rec.Series.Compatible(attribution.Categorical, strict) {
		t.Error("the rebuilt series record is not compatible with the thresholds it was built with")
	}
	var detail attribution.StateChanged
	if err := json.Unmarshal(rec.Outbox[1].Detail, &detail); err != nil || detail.EventID != ev.EventID || detail.ObservationCount != 5 {
		t.Fatalf("queued detail %s (%v)", rec.Outbox[1].Detail, err)
	}
}

func TestRebuildKeepsRecordOnBadInput(t *testing.T) {
	th := attribution.DefaultThresholds()
	key := attribution.SeriesKey{IdentityUUID: "id-1", Primitive: "toolchain.c2.beacon_interval_ms"}
	obs := rebuildObs("att-1", key.Primitive, "a", "b", "c")
	rec := attribution.NewSeriesRecord(key, attribution.Categorical, th)
	if _, err := rec.Rebuild(attribution.Categorical, obs, th); err != nil {
		t.Fatal(err)
	}
	before := rec.Clone()

	// The primitive became numeric: its stored strings no longer fit.
	_, err := rec.Rebuild(attribution.Numeric, obs, th)
	if attribution.ErrorCode(err) != attribution.EINVALID {
		t.Fatalf("error %v (code %q), want an invalid-input error", err, attribution.ErrorCode(err))
	}
	// And an empty series changes nothing either.
	if ev, err := rec.Rebuild(attribution.Categorical, nil, th); ev != nil || err != nil {
		t.Fatalf("empty series: %+v, %v", ev, err)
	}
	a, _ := json.Marshal(before)
	b, _ := json.Marshal(rec)
	if string(a) != string(b) {
		t.Fatalf("record changed:\n%s\n%s", a, b)
	}
}

func TestRebuildTakesLastAttackerOnlyWhenNone(t *testing.T) {
	th := attribution.DefaultThresholds()
	key := attribution.SeriesKey{IdentityUUID: "id-1", Primitive: "motor.input_modality"}
	obs := append(rebuildObs("att-old", key.Primitive, "x", "x"), rebuildObs("att-new", key.Primitive, "x", "x", "x")[2:]...)
	obs[0], obs[2] = obs[2], obs[0] // arrival order does not matter
	rec := attribution.NewSeriesRecord(key, attribution.Categorical, th)
	if _, err := rec.Rebuild(attribution.Categorical, obs, th); err != nil {
		t.Fatal(err)
	}
	if rec.AttackerUUID != "att-new" {
		t.Fatalf("attacker %q, want the one of the last observation", rec.AttackerUUID)
	}
	rec.AttackerUUID = "att-kept"
	if _, err := rec.Rebuild(attribution.Categorical, obs, th); err != nil || rec.AttackerUUID != "att-kept" {
		t.Fatalf("attacker %q (%v), want the record's own", rec.AttackerUUID, err)
	}
}

// TestRebuildMatchesProcessing checks the property rebuild exists for:
// processing a stream under thresholds A and then rebuilding every series
// under B gives the states of processing the stream under B.
func TestRebuildMatchesProcessing(t *testing.T) {
	reg := attribution.BuiltinRegistry()
	prims := []string{"motor.input_modality", "toolchain.c2.beacon_interval_ms", "toolchain.ssh.hassh_client"}
	variants := map[string]func(*attribution.Thresholds){
		"window 3":          func(t *attribution.Thresholds) { t.Window, t.CategoricalMajority = 3, 3 },
		"majority 3":        func(t *attribution.Thresholds) { t.CategoricalMajority = 3 },
		"min observations":  func(t *attribution.Thresholds) { t.MinObservations = 6 },
		"hash window short": func(t *attribution.Thresholds) { t.HashWindowSeconds = 100; t.HashMaxRotations = 0 },
		"drift shift":       func(t *attribution.Thresholds) { t.NumericDriftShift = 0.05; t.NumericConflictCV = 0.2 },
	}
	transitions := 0
	for seed := uint64(1); seed <= 6; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		var bodies [][]byte
		for range 60 {
			prim := prims[rng.IntN(len(prims))]
			var v any
			switch reg.Kind(prim) {
			case attribution.Numeric:
				v = 1000 + rng.IntN(4)*400
			case attribution.Hash:
				v = fmt.Sprintf("h%d", rng.IntN(3))
			default:
				v = []string{"typed", "pasted"}[rng.IntN(2)]
			}
			b, _ := json.Marshal(map[string]any{
				"primitive": prim, "value": v, "evidence_ref": fmt.Sprintf("r%03d", rng.IntN(50)),
				"ts": 1000 + float64(rng.IntN(5000)), "attacker_uuid": fmt.Sprintf("att-%d", rng.IntN(2)),
			})
			bodies = append(bodies, b)
		}
		base := attribution.DefaultThresholds()
		before := mustProcessStream(t, bodies, reg, base)
		for name, change := range variants {
			th := base
			change(&th)
			want := map[attribution.SeriesKey]attribution.State{}
			for _, r := range mustProcessStream(t, bodies, reg, th).Records() {
				want[r.Key] = *r.Current
			}
			for _, r := range before.Records() {
				obs, err := before.StoredObservations(r.Key), error(nil)
				if err != nil {
					t.Fatal(err)
				}
				prior := *r.Current
				ev, err := r.Rebuild(reg.Kind(r.Key.Primitive), obs, th)
				if err != nil {
					t.Fatalf("seed %d, %s, %s: %v", seed, name, r.Key, err)
				}
				if got := *r.Current; !sameState(got, want[r.Key]) {
					t.Errorf("seed %d, %s, %s: rebuilt %+v, processing gives %+v", seed, name, r.Key, got, want[r.Key])
				}
				if ev != nil {
					transitions++
				}
				if (ev != nil) != (prior.State != r.Current.State) {
					t.Errorf("seed %d, %s, %s: %s → %s with event %v", seed, name, r.Key, prior.State, r.Current.State, ev)
				}
			}
		}
	}
	if transitions < 10 {
		t.Fatalf("only %d rebuilds changed a state word: the streams do not exercise the thresholds", transitions)
	}
}

func sameState(a, b attribution.State) bool {
	return a.State == b.State && a.CurrentValue == b.CurrentValue && a.ObservationCount == b.ObservationCount &&
		a.LastObservationTS == b.LastObservationTS && closeEnough(a.Confidence, b.Confidence)
}

func TestIdentityReconcile(t *testing.T) {
	th := attribution.DefaultThresholds()
	ident := &attribution.IdentityRecord{IdentityUUID: "id-1"}
	series := func(prim, word string) *attribution.SeriesRecord {
		return &attribution.SeriesRecord{
			Key:          attribution.SeriesKey{IdentityUUID: "id-1", Primitive: prim},
			AttackerUUID: "att-1",
			Current:      &attribution.State{State: word, LastObservationTS: 50},
		}
	}
	steps := []struct {
		name      string
		rec       *attribution.SeriesRecord
		changed   bool
		suspicion []string // primitives of the suspicion event, nil for none
		flagged   []string
	}{
		{"first multi_actor", series("a.x", attribution.StateMultiActor), true, nil, []string{"a.x"}},
		{"already flagged", series("a.x", attribution.StateMultiActor), false, nil, []string{"a.x"}},
		{"second raises suspicion", series("b.y", attribution.StateMultiActor), true, []string{"a.x", "b.y"}, []string{"a.x", "b.y"}},
		{"unflagged and consistent", series("c.z", attribution.StateStable), false, nil, []string{"a.x", "b.y"}},
		{"record without state", &attribution.SeriesRecord{Key: attribution.SeriesKey{IdentityUUID: "id-1", Primitive: "d.w"}}, false, nil, []string{"a.x", "b.y"}},
		{"leaves multi_actor: re-arms", series("a.x", attribution.StateDrifting), true, nil, []string{"b.y"}},
		{"back: fires again", series("a.x", attribution.StateMultiActor), true, []string{"a.x", "b.y"}, []string{"a.x", "b.y"}},
	}
	for _, s := range steps {
		ev, changed := ident.Reconcile(s.rec, th)
		if changed != s.changed || !slices.Equal(ident.Flagged, s.flagged) {
			t.Fatalf("%s: changed %v flagged %v; want %v %v", s.name, changed, ident.Flagged, s.changed, s.flagged)
		}
		switch {
		case s.suspicion == nil && ev != nil:
			t.Fatalf("%s: unexpected suspicion %+v", s.name, ev)
		case s.suspicion != nil && (ev == nil || !slices.Equal(ev.Primitives, s.suspicion) || ev.TS != 50 || ev.AttackerUUID != "att-1"):
			t.Fatalf("%s: suspicion %+v, want primitives %v", s.name, ev, s.suspicion)
		}
	}
	if ident.Suspicions != 2 {
		t.Fatalf("suspicions %d, want 2", ident.Suspicions)
	}
}

func TestIdentityReconcileAllEvaluatesOnce(t *testing.T) {
	th := attribution.DefaultThresholds()
	series := func(prim, word string, ts float64) *attribution.SeriesRecord {
		return &attribution.SeriesRecord{
			Key:          attribution.SeriesKey{IdentityUUID: "id-1", Primitive: prim},
			AttackerUUID: "att-1",
			Current:      &attribution.State{State: word, LastObservationTS: ts},
		}
	}
	// Three primitives flagged, a suspicion raised about them.
	ident := &attribution.IdentityRecord{IdentityUUID: "id-1"}
	for _, p := range []string{"a.x", "b.y", "c.z"} {
		ident.Reconcile(series(p, attribution.StateMultiActor, 1), th)
	}
	if ident.Suspicions != 2 || !slices.Equal(ident.Fired, []string{"a.x", "b.y", "c.z"}) {
		t.Fatalf("setup: %+v", ident)
	}

	// A rebuild takes all three out of multi_actor: one at a time, the
	// rule would fire about {b.y, c.z}; at once it only re-arms.
	one := ident.Clone()
	var halfway *attribution.MultiActorSuspected
	for _, p := range []string{"a.x", "b.y", "c.z"} {
		if s, _ := one.Reconcile(series(p, attribution.StateStable, 2), th); s != nil && halfway == nil {
			halfway = s
		}
	}
	if halfway == nil {
		t.Fatal("one at a time raised nothing: the case does not show the difference")
	}
	all := ident.Clone()
	recs := []*attribution.SeriesRecord{series("a.x", attribution.StateStable, 2), series("b.y", attribution.StateStable, 2),
		series("c.z", attribution.StateStable, 2), series("d.w", attribution.StateStable, 2)}
	s, carrier, changed := all.ReconcileAll(recs, th)
	if s != nil || !changed || len(all.Flagged) != 0 || all.Fired != nil || all.Suspicions != 2 || carrier == nil {
		t.Fatalf("all at once: suspicion %+v, changed %v, record %+v", s, changed, all)
	}

	// Two enter multi_actor at once: one suspicion, carried by the one
	// observed last.
	s, carrier, changed = all.ReconcileAll([]*attribution.SeriesRecord{
		series("a.x", attribution.StateMultiActor, 9), series("b.y", attribution.StateMultiActor, 5), series("c.z", attribution.StateDrifting, 7),
	}, th)
	if s == nil || !changed || !slices.Equal(s.Primitives, []string{"a.x", "b.y"}) || carrier.Key.Primitive != "a.x" || s.TS != 9 || all.Suspicions != 3 {
		t.Fatalf("two at once: suspicion %+v carried by %v", s, carrier.Key)
	}
	// Consistent already: nothing.
	if s, carrier, changed := all.ReconcileAll([]*attribution.SeriesRecord{series("a.x", attribution.StateMultiActor, 9)}, th); s != nil || carrier != nil || changed {
		t.Fatalf("consistent: %+v %v %v", s, carrier, changed)
	}
}
