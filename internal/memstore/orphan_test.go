package memstore_test

import (
	"context"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

// TestRecordsLeaveOrphansOut: a young record under an older membership
// than its identity's is an orphan; Records lists every record but those.
func TestRecordsLeaveOrphansOut(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	th := attribution.DefaultThresholds()
	for _, prim := range []string{"motor.input_modality", "environmental.locale"} {
		rec := attribution.NewSeriesRecord(attribution.SeriesKey{IdentityUUID: "I", Primitive: prim}, attribution.Categorical, th)
		rec.Young = prim == "motor.input_modality"
		if err := s.Commit(ctx, &attribution.Commit{Series: []*attribution.SeriesRecord{rec}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.Records()); n != 2 {
		t.Fatalf("before the membership moves: %d records, want 2", n)
	}
	ident := &attribution.IdentityRecord{IdentityUUID: "I"}
	ident.Membership = 1
	if err := s.CommitMembership(ctx, &attribution.MembershipCommit{Identities: []*attribution.IdentityRecord{ident}}); err != nil {
		t.Fatal(err)
	}
	recs := s.Records()
	if len(recs) != 1 || recs[0].Key.Primitive != "environmental.locale" {
		t.Fatalf("after: records %v, want the one not young", recs)
	}
	if all, _ := s.LoadIdentitySeries(ctx, "I"); len(all) != 2 {
		t.Fatalf("the store still holds both: got %d", len(all))
	}
}
