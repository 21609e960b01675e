package attribution_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

// upgradeFixture is a series stored by an earlier version: its record as
// that version encoded it, its observations, the next observation, and the
// state the whole series must have after it.
type upgradeFixture struct {
	Primitive    string          `json:"primitive"`
	Record       json.RawMessage `json:"record"`
	Observations []struct {
		TS          float64         `json:"ts"`
		EvidenceRef string          `json:"evidence_ref"`
		Value       json.RawMessage `json:"value"`
	} `json:"observations"`
	Next struct {
		TS          float64         `json:"ts"`
		EvidenceRef string          `json:"evidence_ref"`
		Value       json.RawMessage `json:"value"`
	} `json:"next"`
	Want struct {
		State            string            `json:"state"`
		CurrentValue     attribution.Value `json:"current_value"`
		ObservationCount int               `json:"observation_count"`
	} `json:"want"`
}

func observationBody(attacker, primitive, ref string, ts float64, value json.RawMessage) []byte {
	b, _ := json.Marshal(map[string]any{
		"attacker_uuid": attacker, "primitive": primitive, "evidence_ref": ref, "ts": ts, "value": value,
	})
	return b
}

// TestRecordBeforeValueEqualityIsRebuilt stores records written before
// value equality (fixtures) and checks that the next observation finds
// them incompatible, recomputes the whole series and leaves the exact
// state, with the transition it makes.
func TestRecordBeforeValueEqualityIsRebuilt(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	paths, err := filepath.Glob(filepath.Join("testdata", "upgrade", "*-before-value-equality.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no upgrade fixtures: %v", err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var fx upgradeFixture
			if err := json.Unmarshal(raw, &fx); err != nil {
				t.Fatal(err)
			}
			const attacker = "att-up"
			store := memstore.New()
			identity, err := store.Identity(context.Background(), attacker, attribution.StubIdentityID(attacker))
			if err != nil {
				t.Fatal(err)
			}
			key := attribution.SeriesKey{IdentityUUID: identity, Primitive: fx.Primitive}
			rec := &attribution.SeriesRecord{Key: key}
			if err := json.Unmarshal(fx.Record, rec); err != nil {
				t.Fatalf("old record: %v", err)
			}
			kind := reg.Kind(fx.Primitive)
			if rec.Series.Compatible(kind, th) {
				t.Fatalf("a record without the value equality version passes as compatible: %+v", rec.Series)
			}
			seed := &attribution.Commit{Series: []*attribution.SeriesRecord{rec}}
			for _, o := range fx.Observations {
				obs := mustDecode(t, observationBody(attacker, fx.Primitive, o.EvidenceRef, o.TS, o.Value))
				seed.Observations = append(seed.Observations, attribution.ObservationWrite{Key: key, Observation: obs})
			}
			if err := store.Commit(context.Background(), seed); err != nil {
				t.Fatal(err)
			}
			prior := rec.Current.State

			pub := &recorder{}
			p := newProcessor(store, pub, reg, th)
			next := observationBody(attacker, fx.Primitive, fx.Next.EvidenceRef, fx.Next.TS, fx.Next.Value)
			if err := p.Process(context.Background(), []attribution.Message{{ID: "m-1", Body: next}})[0]; err != nil {
				t.Fatal(err)
			}

			recs, err := store.LoadSeries(context.Background(), identity, []string{fx.Primitive}, true)
			if err != nil {
				t.Fatal(err)
			}
			got := recs[fx.Primitive]
			if got.Series.Equality != attribution.ValueEquality || !got.Series.Compatible(kind, th) {
				t.Errorf("record after the next observation is still of the old format: %+v", got.Series)
			}
			if got.Current.State != fx.Want.State || got.Current.CurrentValue != fx.Want.CurrentValue || got.Current.ObservationCount != fx.Want.ObservationCount {
				t.Errorf("state %+v, want %+v", *got.Current, fx.Want)
			}
			stored, err := store.StoredObservations(key), error(nil)
			if err != nil {
				t.Fatal(err)
			}
			points := make([]attribution.Point, len(stored))
			for i, o := range stored {
				points[i] = o.Point()
			}
			attribution.SortPoints(points)
			if whole := attribution.Merge(kind, points, th); *got.Current != whole {
				t.Errorf("state %+v differs from the whole-series merge %+v", *got.Current, whole)
			}
			events := pub.events()
			if len(events) != 1 {
				t.Fatalf("published %d events, want the one transition %s → %s", len(events), prior, fx.Want.State)
			}
			var change attribution.StateChanged
			if err := json.Unmarshal(events[0].Event.Detail, &change); err != nil {
				t.Fatal(err)
			}
			if change.OldState == nil || *change.OldState != prior || change.NewState != fx.Want.State || change.Sequence != rec.Transitions+1 {
				t.Errorf("event %+v, want %s → %s as transition %d", change, prior, fx.Want.State, rec.Transitions+1)
			}
		})
	}
}
