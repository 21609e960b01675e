package operator_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
	"decnet-attribution/internal/operator"
)

func TestStateReaderShowsWhatProcessingProduced(t *testing.T) {
	t.Parallel()
	e := mustEnv(t)
	th := attribution.DefaultThresholds()
	bodies := testStream(2, 7, 3)
	mustProcess(t, e, bodies, th)
	want := replayStates(t, bodies, th)

	r := &operator.StateReader{Store: e.store, IdentitiesTable: e.tables.Identities, StatesTable: e.tables.States}
	for _, attacker := range []string{"att-0", "att-1"} {
		got, err := r.Attacker(context.Background(), attacker)
		if err != nil {
			t.Fatal(err)
		}
		identity := attribution.StubIdentityID(attacker)
		if got.IdentityUUID != identity || got.AttackerUUID != attacker {
			t.Fatalf("identity %s attacker %s, want %s %s", got.IdentityUUID, got.AttackerUUID, identity, attacker)
		}
		var prims []string
		for _, s := range got.States {
			prims = append(prims, s.Primitive)
			w, ok := want[attribution.SeriesKey{IdentityUUID: identity, Primitive: s.Primitive}]
			if !ok || !sameState(s.State, w) {
				t.Errorf("%s %s: table says %+v, replay %+v", attacker, s.Primitive, s.State, w)
			}
			if s.AttackerUUID != attacker || s.LastChangeTS == 0 || s.Transitions == 0 || s.Pending != 0 {
				t.Errorf("%s %s: %+v", attacker, s.Primitive, s)
			}
		}
		wantPrims := []string{"environmental.locale", "motor.input_modality", "toolchain.c2.beacon_interval_ms", "toolchain.ssh.hassh_client"}
		if !slices.Equal(prims, wantPrims) {
			t.Fatalf("%s: primitives %v, want %v (sorted, without the identity item)", attacker, prims, wantPrims)
		}
		var flagged []string
		for _, s := range got.States {
			if s.State.State == attribution.StateMultiActor {
				flagged = append(flagged, s.Primitive)
			}
		}
		if !slices.Equal(got.Flagged, flagged) || len(flagged) == 0 {
			t.Errorf("%s: identity record flags %v, the states say %v", attacker, got.Flagged, flagged)
		}

		byIdentity, err := r.Identity(context.Background(), identity)
		if err != nil {
			t.Fatal(err)
		}
		if len(byIdentity.States) != len(got.States) || byIdentity.AttackerUUID != attacker {
			t.Errorf("by identity: %+v", byIdentity)
		}
	}
}

func TestStateReaderNotFound(t *testing.T) {
	t.Parallel()
	e := mustEnv(t)
	r := &operator.StateReader{Store: e.store, IdentitiesTable: e.tables.Identities, StatesTable: e.tables.States}
	if _, err := r.Attacker(context.Background(), "att-never-seen"); attribution.ErrorCode(err) != attribution.ENOTFOUND {
		t.Errorf("unknown attacker: %v", err)
	}
	if _, err := r.Identity(context.Background(), "no-such-identity"); attribution.ErrorCode(err) != attribution.ENOTFOUND {
		t.Errorf("unknown identity: %v", err)
	}
	tables := e.tables
	tables.States = "no-such-table"
	r = &operator.StateReader{Store: ddbstore.New(e.ddb, tables, 0), IdentitiesTable: tables.Identities, StatesTable: tables.States}
	var missing *operator.MissingResourceError
	if _, err := r.Identity(context.Background(), "x"); !errors.As(err, &missing) || missing.Name != "no-such-table" {
		t.Errorf("missing table: %v", err)
	}
}

// TestStateReaderSkipsOrphans: a young record left under an older
// membership than its identity's holds nothing counted; the reader does
// not show it.
func TestStateReaderSkipsOrphans(t *testing.T) {
	t.Parallel()
	e := mustEnv(t)
	ctx := context.Background()
	th := attribution.DefaultThresholds()
	for _, prim := range []string{"motor.input_modality", "environmental.locale"} {
		rec := attribution.NewSeriesRecord(attribution.SeriesKey{IdentityUUID: "id-orphans", Primitive: prim}, attribution.Categorical, th)
		rec.Young = prim == "motor.input_modality"
		if err := e.store.Commit(ctx, &attribution.Commit{Series: []*attribution.SeriesRecord{rec}}); err != nil {
			t.Fatal(err)
		}
	}
	ident := &attribution.IdentityRecord{IdentityUUID: "id-orphans"}
	ident.Membership = 1
	if err := e.store.CommitMembership(ctx, &attribution.MembershipCommit{Identities: []*attribution.IdentityRecord{ident}}); err != nil {
		t.Fatal(err)
	}
	r := &operator.StateReader{Store: e.store, IdentitiesTable: e.tables.Identities, StatesTable: e.tables.States}
	got, err := r.Identity(ctx, "id-orphans")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.States) != 1 || got.States[0].Primitive != "environmental.locale" {
		t.Fatalf("states %+v, want the one not orphaned", got.States)
	}
}
