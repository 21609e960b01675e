package attribution_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

func fallbackMessage(tb testing.TB, primitive, ref string, ts float64, value any) attribution.Message {
	tb.Helper()
	body, err := json.Marshal(map[string]any{
		"attacker_uuid": "att-fallback", "primitive": primitive, "evidence_ref": ref, "ts": ts, "value": value,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return attribution.Message{ID: ref, Body: body}
}

// mustAgreeWithMerge checks the stored state of the one series in store
// against Merge over every observation it holds.
func mustAgreeWithMerge(t *testing.T, store *memstore.Store, kind attribution.Kind, th attribution.Thresholds) {
	t.Helper()
	recs := store.Records()
	if len(recs) != 1 {
		t.Fatalf("%d series, want 1", len(recs))
	}
	obs, err := store.StoredObservations(recs[0].Key), error(nil)
	if err != nil {
		t.Fatal(err)
	}
	points := make([]attribution.Point, len(obs))
	for i, o := range obs {
		points[i] = o.Point()
	}
	attribution.SortPoints(points)
	want := attribution.Merge(kind, points, th)
	if got := *recs[0].Current; got != want {
		t.Fatalf("state %+v, whole-series merge says %+v", got, want)
	}
}

// TestProcessorFallsBackWhenTheRecordCannotStayExact covers the two cases
// the README names besides amendments: more distinct hashes in one window
// than the record tracks, and a record built with other thresholds.
func TestProcessorFallsBackWhenTheRecordCannotStayExact(t *testing.T) {
	t.Run("more distinct hashes than the record tracks", func(t *testing.T) {
		th := attribution.DefaultThresholds()
		store := memstore.New()
		proc := &attribution.Processor{Store: store, Identities: store, Publisher: &downBus{},
			Registry: attribution.BuiltinRegistry(), Thresholds: th}
		for i := range attribution.MaxHashValues + 16 {
			m := fallbackMessage(t, "motor.digraph_simhash", fmt.Sprintf("s%03d", i), 1000+float64(i), fmt.Sprintf("%016x", i))
			if err := proc.Process(context.Background(), []attribution.Message{m})[0]; err != nil {
				t.Fatal(err)
			}
		}
		if store.Records()[0].Series.Exact() {
			t.Fatal("the record claims to be exact past its hash bound")
		}
		mustAgreeWithMerge(t, store, attribution.Hash, th)
	})
	t.Run("record built with another window", func(t *testing.T) {
		before := attribution.DefaultThresholds()
		store := memstore.New()
		values := []string{"typed", "typed", "pasted", "typed", "pasted", "pasted", "typed", "pasted", "pasted", "pasted", "typed", "pasted"}
		proc := &attribution.Processor{Store: store, Identities: store, Publisher: &downBus{},
			Registry: attribution.BuiltinRegistry(), Thresholds: before}
		for i, v := range values[:len(values)-1] {
			if err := proc.Process(context.Background(), []attribution.Message{fallbackMessage(t, "motor.input_modality", fmt.Sprintf("s%03d", i), float64(i), v)})[0]; err != nil {
				t.Fatal(err)
			}
		}
		after := before
		after.Window, after.CategoricalMajority = 3, 2
		proc = &attribution.Processor{Store: store, Identities: store, Publisher: &downBus{},
			Registry: attribution.BuiltinRegistry(), Thresholds: after}
		last := len(values) - 1
		if err := proc.Process(context.Background(), []attribution.Message{fallbackMessage(t, "motor.input_modality", fmt.Sprintf("s%03d", last), float64(last), values[last])})[0]; err != nil {
			t.Fatal(err)
		}
		if !store.Records()[0].Series.Compatible(attribution.Categorical, after) {
			t.Fatal("the record was not rebuilt for the new window")
		}
		mustAgreeWithMerge(t, store, attribution.Categorical, after)
	})
}
