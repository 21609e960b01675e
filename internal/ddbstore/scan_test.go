package ddbstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
)

// TestScanSegmentsCoverTheObservationsOnce: paged segments, resumed from
// cursors that went through a JSON file, read every observation item
// once, with its series and attacker.
func TestScanSegmentsCoverTheObservationsOnce(t *testing.T) {
	store, _ := mustStore(t)
	ctx := context.Background()
	want := map[string]int{} // series → items
	attackerOf := map[string]string{}
	for a := range 3 {
		attacker := fmt.Sprint("att-scan-", a)
		for _, prim := range []string{"motor.input_modality", "environmental.locale"} {
			key := attribution.SeriesKey{IdentityUUID: attribution.StubIdentityID(attacker), Primitive: prim}
			c := &attribution.Commit{}
			for i := range 4 {
				c.Observations = append(c.Observations, attribution.ObservationWrite{Key: key, Observation: attribution.Observation{
					ID: fmt.Sprint("o", i), Primitive: prim, Value: attribution.Value(`"typed"`),
					EvidenceRef: fmt.Sprintf("s%02d", i), TS: float64(1_700_000_000 + i), AttackerUUID: attacker,
				}})
			}
			if err := store.Commit(ctx, c); err != nil {
				t.Fatal(err)
			}
			want[key.String()] = len(c.Observations)
			attackerOf[key.String()] = attacker
		}
	}

	const segments = 3
	got := map[string]int{}
	var scanned int64
	for seg := range segments {
		var cursor ddbstore.ScanCursor
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatalf("segment %d: no end after %d pages", seg, pages)
			}
			page, err := store.ScanObservations(ctx, seg, segments, cursor, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Series) > 2 {
				t.Fatalf("segment %d: a page of %d items, over the limit of 2", seg, len(page.Series))
			}
			scanned += page.Scanned
			for _, s := range page.Series {
				got[s.Series]++
				if s.Attacker != attackerOf[s.Series] {
					t.Errorf("series %s: attacker %q, want %q", s.Series, s.Attacker, attackerOf[s.Series])
				}
			}
			if len(page.Next) == 0 {
				break
			}
			// As a checkpoint file keeps it.
			saved, err := json.Marshal(struct {
				Cursor json.RawMessage `json:"cursor"`
			}{json.RawMessage(page.Next)})
			if err != nil {
				t.Fatal(err)
			}
			var loaded struct {
				Cursor json.RawMessage `json:"cursor"`
			}
			if err := json.Unmarshal(saved, &loaded); err != nil {
				t.Fatal(err)
			}
			cursor = ddbstore.ScanCursor(loaded.Cursor)
		}
	}
	total := 0
	for s, n := range want {
		total += n
		if got[s] != n {
			t.Errorf("series %s: scanned %d items, want %d", s, got[s], n)
		}
	}
	if len(got) != len(want) || scanned != int64(total) {
		t.Errorf("scanned %d items of %d series, want %d of %d", scanned, len(got), total, len(want))
	}
	if n, err := store.ObservationItems(ctx); err != nil || n != int64(total) {
		t.Errorf("observation items %d (%v), want %d", n, err, total)
	}
	if _, err := store.ScanObservations(ctx, 0, 1, ddbstore.ScanCursor("not json"), 0); err == nil {
		t.Error("a corrupt cursor was accepted")
	}
}

// TestListPrimitivesLeavesOutTheIdentityRecord: an identity's listed
// primitives are its series records', sorted, not its own record's.
func TestListPrimitivesLeavesOutTheIdentityRecord(t *testing.T) {
	store, _ := mustStore(t)
	ctx := context.Background()
	th := attribution.DefaultThresholds()
	c := &attribution.Commit{Identity: &attribution.IdentityRecord{IdentityUUID: "id-list", Flagged: []string{"z.last"}}}
	for _, p := range []string{"z.last", "a.first", "m.middle"} {
		c.Series = append(c.Series, attribution.NewSeriesRecord(attribution.SeriesKey{IdentityUUID: "id-list", Primitive: p}, attribution.Categorical, th))
	}
	if err := store.Commit(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := store.ListPrimitives(ctx, "id-list")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.first", "m.middle", "z.last"}; !slices.Equal(got, want) {
		t.Fatalf("primitives %v, want %v", got, want)
	}
	if got, err := store.ListPrimitives(ctx, "id-none"); err != nil || len(got) != 0 {
		t.Fatalf("identity without records: %v, %v", got, err)
	}
}
