// Package storetest is the contract every attribution.Store and
// attribution.Identities must meet, run against the in-memory store and
// the DynamoDB store alike.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"

	"decnet-attribution/internal/attribution"
)

// Backend is a fresh, empty store.
type Backend interface {
	attribution.Store
	attribution.Identities
}

// Run runs the contract against stores made by newStore.
func Run(t *testing.T, newStore func(t *testing.T) Backend) {
	t.Run("identity first sightings agree", func(t *testing.T) { testIdentityRace(t, newStore(t)) })
	t.Run("commit creates and versions records", func(t *testing.T) { testCommit(t, newStore(t)) })
	t.Run("stored observation is reported with its content", func(t *testing.T) { testObservationExists(t, newStore(t)) })
	t.Run("a record alone commits with its acknowledged position", func(t *testing.T) { testRecordAlone(t, newStore(t)) })
	t.Run("lookups read the items under their refs", func(t *testing.T) { testLookup(t, newStore(t)) })
	t.Run("item writes never replace a later revision", func(t *testing.T) { testPutRevisions(t, newStore(t)) })
	t.Run("amendment replaces only the expected content", func(t *testing.T) { testAmendment(t, newStore(t)) })
	t.Run("version conflict writes nothing", func(t *testing.T) { testVersionConflict(t, newStore(t)) })
	t.Run("identity record is versioned", func(t *testing.T) { testIdentityRecord(t, newStore(t)) })
	t.Run("outbox ack never lowers the position", func(t *testing.T) { testAck(t, newStore(t)) })
	t.Run("concurrent commits on one record: one wins", func(t *testing.T) { testConcurrentCommits(t, newStore(t)) })
	t.Run("membership change writes all or nothing", func(t *testing.T) { testMembershipCommit(t, newStore(t)) })
	t.Run("identity record outbox is acknowledged", func(t *testing.T) { testIdentityOutbox(t, newStore(t)) })
}

func observation(ref string, ts float64, value string) attribution.Observation {
	return attribution.Observation{
		ID: "obs-" + ref, Primitive: "motor.input_modality", Value: attribution.Value(value),
		EvidenceRef: ref, TS: ts, AttackerUUID: "att-1", Source: "behave-shell",
	}
}

// commitOne builds the commit of one observation applied to rec with its
// item, as the transactional design writes it: the event it causes goes to
// the record's outbox.
func commitOne(rec *attribution.SeriesRecord, o attribution.Observation, replaces string) *attribution.Commit {
	th := attribution.DefaultThresholds()
	rec.Series.Add(o.Point())
	if _, err := rec.Settle(rec.Series.State(th), o.AttackerUUID); err != nil {
		panic(err)
	}
	revision := 1
	if replaces != "" {
		revision = 2
	}
	return &attribution.Commit{
		Observations: []attribution.ObservationWrite{{Key: rec.Key, Observation: o, Replaces: replaces, Revision: revision}},
		Series:       []*attribution.SeriesRecord{rec},
		Applied:      []attribution.Observation{o},
	}
}

func mustLoad(t *testing.T, s Backend, key attribution.SeriesKey) *attribution.SeriesRecord {
	t.Helper()
	got, err := s.LoadSeries(context.Background(), key.IdentityUUID, []string{key.Primitive, "zz.other"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got["zz.other"]; ok {
		t.Fatal("a primitive without a record was returned")
	}
	rec := got[key.Primitive]
	if rec == nil {
		t.Fatalf("no record for %s", key)
	}
	return rec
}

func newKey(name string) attribution.SeriesKey {
	return attribution.SeriesKey{IdentityUUID: "id-" + name, Primitive: "motor.input_modality"}
}

func testIdentityRace(t *testing.T, s Backend) {
	ctx := context.Background()
	const racers = 8
	got := make([]string, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := s.Identity(ctx, "att-race", fmt.Sprintf("proposal-%d", i))
			if err != nil {
				t.Error(err)
			}
			got[i] = id
		}()
	}
	wg.Wait()
	for _, id := range got {
		if id != got[0] || id == "" {
			t.Fatalf("first sightings disagree: %v", got)
		}
	}
	again, err := s.Identity(ctx, "att-race", "late-proposal")
	if err != nil || again != got[0] {
		t.Fatalf("identity changed after creation: %q, %v", again, err)
	}
}

func testCommit(t *testing.T, s Backend) {
	ctx := context.Background()
	th := attribution.DefaultThresholds()
	key := newKey("commit")
	rec := attribution.NewSeriesRecord(key, attribution.Categorical, th)
	if err := s.Commit(ctx, commitOne(rec, observation("r1", 10, `"typed"`), "")); err != nil {
		t.Fatal(err)
	}
	stored := mustLoad(t, s, key)
	if stored.Version != 1 || stored.Series.Count != 1 || stored.Current == nil || len(stored.Pending()) != 1 {
		t.Fatalf("stored record = %+v", stored)
	}
	if err := s.Commit(ctx, commitOne(stored, observation("r2", 11, `"typed"`), "")); err != nil {
		t.Fatal(err)
	}
	stored = mustLoad(t, s, key)
	if stored.Version != 2 || stored.Series.Count != 2 {
		t.Fatalf("second commit: version %d count %d", stored.Version, stored.Series.Count)
	}
	obs, err := s.LoadObservations(ctx, key)
	if err != nil || len(obs) != 2 {
		t.Fatalf("observations = %v, %v", obs, err)
	}
	for _, o := range obs {
		want := observation(o.EvidenceRef, o.TS, string(o.Value))
		if o.Fingerprint() != want.Fingerprint() {
			t.Errorf("observation %s did not round-trip: %+v", o.EvidenceRef, o)
		}
	}
}

func testObservationExists(t *testing.T, s Backend) {
	ctx := context.Background()
	th := attribution.DefaultThresholds()
	key := newKey("exists")
	first := observation("r1", 10, `"typed"`)
	if err := s.Commit(ctx, commitOne(attribution.NewSeriesRecord(key, attribution.Categorical, th), first, "")); err != nil {
		t.Fatal(err)
	}
	stored := mustLoad(t, s, key)
	changed := observation("r1", 12, `"pasted"`)
	err := s.Commit(ctx, commitOne(stored.Clone(), changed, ""))
	var exists *attribution.ObservationExistsError
	if !errors.As(err, &exists) || exists.Index != 0 || exists.Stored.Observation.Fingerprint() != first.Fingerprint() || exists.Stored.Revision != 1 {
		t.Fatalf("commit of a stored key: err = %v, want ObservationExistsError with the stored content at revision 1", err)
	}
	if len(exists.Stored.Events) != 0 {
		t.Fatalf("an item written with its record carries events: %+v", exists.Stored.Events)
	}
	if after := mustLoad(t, s, key); after.Version != stored.Version || after.Series.Count != 1 {
		t.Fatalf("failed commit changed the record: %+v", after)
	}
}

func testRecordAlone(t *testing.T, s Backend) {
	ctx := context.Background()
	th := attribution.DefaultThresholds()
	key := newKey("alone")
	rec := attribution.NewSeriesRecord(key, attribution.Categorical, th)
	o := observation("r1", 10, `"typed"`)
	rec.Series.Add(o.Point())
	if _, err := rec.Settle(rec.Series.State(th), o.AttackerUUID); err != nil {
		t.Fatal(err)
	}
	one := func(r *attribution.SeriesRecord) *attribution.Commit {
		return &attribution.Commit{Series: []*attribution.SeriesRecord{r}}
	}
	rec.Young, rec.Membership = true, 3 // created by a single write
	if err := s.Commit(ctx, one(rec)); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, one(rec)); !errors.Is(err, attribution.ErrVersionConflict) {
		t.Fatalf("second create of one record: err = %v, want a version conflict", err)
	}
	stored := mustLoad(t, s, key)
	if stored.Version != 1 || len(stored.Pending()) != 1 || !stored.Complete || !stored.Young || stored.Membership != 3 {
		t.Fatalf("stored record: version %d, %d pending, complete %v, young %v, membership %d; want 1, 1, true, true, 3",
			stored.Version, len(stored.Pending()), stored.Complete, stored.Young, stored.Membership)
	}
	stored.Young = false
	// The bus took the event: the next write of the record says so.
	stored.Published = stored.Outbox[0].Position
	if err := s.Commit(ctx, one(stored)); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, s, key); got.Version != 2 || len(got.Pending()) != 0 || got.Published != stored.Published || got.Young {
		t.Fatalf("after a write with the acknowledged position: version %d, %d pending, published %d", got.Version, len(got.Pending()), got.Published)
	}
	if err := s.Commit(ctx, one(stored)); !errors.Is(err, attribution.ErrVersionConflict) {
		t.Fatalf("write at a stale version: err = %v, want a version conflict", err)
	}
	if obs, _ := s.LoadObservations(ctx, key); len(obs) != 0 {
		t.Fatalf("a record alone wrote %d observation items", len(obs))
	}
}

func testLookup(t *testing.T, s Backend) {
	ctx := context.Background()
	key := newKey("lookup")
	a, b := observation("r1", 10, `"typed"`), observation("r2", 11, `"typed"`)
	if err := s.PutObservations(ctx, []attribution.ObservationWrite{{Key: key, Observation: a, Revision: 1}, {Key: key, Observation: b, Revision: 3}}); err != nil {
		t.Fatal(err)
	}
	refs := []attribution.ObservationRef{{Key: key, Ref: "r1"}, {Key: key, Ref: "r2"}, {Key: key, Ref: "r3"}, {Key: newKey("elsewhere"), Ref: "r1"}, {Key: key, Ref: "r1"}}
	got, err := s.LookupObservations(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[refs[0]].Observation.Fingerprint() != a.Fingerprint() || got[refs[1]].Revision != 3 {
		t.Fatalf("lookup = %+v; want r1 and r2 (revision 3) only", got)
	}
}

func testPutRevisions(t *testing.T, s Backend) {
	ctx := context.Background()
	key := newKey("revisions")
	put := func(value string, revision int) {
		t.Helper()
		o := observation("r1", 10, value)
		if err := s.PutObservations(ctx, []attribution.ObservationWrite{{Key: key, Observation: o, Revision: revision}}); err != nil {
			t.Fatal(err)
		}
	}
	stored := func() attribution.StoredObservation {
		t.Helper()
		got, err := s.LookupObservations(ctx, []attribution.ObservationRef{{Key: key, Ref: "r1"}})
		if err != nil {
			t.Fatal(err)
		}
		return got[attribution.ObservationRef{Key: key, Ref: "r1"}]
	}
	put(`"typed"`, 2)
	put(`"typed"`, 2)  // the same write again
	put(`"pasted"`, 1) // a slow write of an earlier revision
	if got := stored(); got.Revision != 2 || got.Observation.Value != `"typed"` {
		t.Fatalf("after an earlier revision: %+v; want revision 2 kept", got)
	}
	put(`"mixed"`, 3)
	if got := stored(); got.Revision != 3 || got.Observation.Value != `"mixed"` {
		t.Fatalf("after a later revision: %+v; want revision 3", got)
	}
}

func testAmendment(t *testing.T, s Backend) {
	ctx := context.Background()
	th := attribution.DefaultThresholds()
	key := newKey("amend")
	first := observation("r1", 10, `"typed"`)
	if err := s.Commit(ctx, commitOne(attribution.NewSeriesRecord(key, attribution.Categorical, th), first, "")); err != nil {
		t.Fatal(err)
	}
	amended := observation("r1", 10, `"pasted"`)
	stale := mustLoad(t, s, key)
	err := s.Commit(ctx, commitOne(stale.Clone(), amended, "not-the-stored-fingerprint"))
	var exists *attribution.ObservationExistsError
	if !errors.As(err, &exists) {
		t.Fatalf("amendment with a wrong fingerprint: err = %v, want ObservationExistsError", err)
	}
	c := commitOne(stale, amended, first.Fingerprint())
	if err := s.Commit(ctx, c); err != nil {
		t.Fatal(err)
	}
	obs, err := s.LoadObservations(ctx, key)
	if err != nil || len(obs) != 1 || obs[0].Value != `"pasted"` {
		t.Fatalf("after amendment: %+v, %v", obs, err)
	}
	err = s.Commit(ctx, commitOne(mustLoad(t, s, key), amended, ""))
	if !errors.As(err, &exists) || exists.Stored.Revision != 2 || exists.Stored.Observation.Fingerprint() != amended.Fingerprint() {
		t.Fatalf("amended observation reported as %+v, want the amendment at revision 2", exists)
	}
}

func testVersionConflict(t *testing.T, s Backend) {
	ctx := context.Background()
	th := attribution.DefaultThresholds()
	key := newKey("conflict")
	if err := s.Commit(ctx, commitOne(attribution.NewSeriesRecord(key, attribution.Categorical, th), observation("r1", 10, `"typed"`), "")); err != nil {
		t.Fatal(err)
	}
	// A writer that read nothing (version 0) must not overwrite.
	err := s.Commit(ctx, commitOne(attribution.NewSeriesRecord(key, attribution.Categorical, th), observation("r2", 11, `"typed"`), ""))
	if !errors.Is(err, attribution.ErrVersionConflict) {
		t.Fatalf("stale create: err = %v, want a version conflict", err)
	}
	obs, _ := s.LoadObservations(ctx, key)
	if len(obs) != 1 {
		t.Fatalf("a conflicting commit wrote its observation: %d stored", len(obs))
	}
}

func testIdentityRecord(t *testing.T, s Backend) {
	ctx := context.Background()
	th := attribution.DefaultThresholds()
	rec, err := s.LoadIdentity(ctx, "id-ident", true)
	if err != nil || rec.Version != 0 {
		t.Fatalf("new identity record: %+v, %v", rec, err)
	}
	rec.Flagged = []string{"a.b", "c.d"}
	key := newKey("ident")
	key.IdentityUUID = "id-ident"
	c := commitOne(attribution.NewSeriesRecord(key, attribution.Categorical, th), observation("r1", 1, `"x"`), "")
	c.Identity = rec
	if err := s.Commit(ctx, c); err != nil {
		t.Fatal(err)
	}
	stored, err := s.LoadIdentity(ctx, "id-ident", true)
	if err != nil || stored.Version != 1 || len(stored.Flagged) != 2 {
		t.Fatalf("stored identity record: %+v, %v", stored, err)
	}
	c = commitOne(mustLoad(t, s, key), observation("r2", 2, `"x"`), "")
	c.Identity = rec // still at version 0
	if err := s.Commit(ctx, c); !errors.Is(err, attribution.ErrVersionConflict) {
		t.Fatalf("stale identity record: err = %v, want a version conflict", err)
	}
}

func testAck(t *testing.T, s Backend) {
	ctx := context.Background()
	th := attribution.DefaultThresholds()
	key := newKey("ack")
	// Outboxes hold the events no observation carries, a rebuild's.
	rec := attribution.NewSeriesRecord(key, attribution.Categorical, th)
	rec.Series.Add(observation("r1", 10, `"typed"`).Point())
	if _, err := rec.Settle(rec.Series.State(th), "att-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, &attribution.Commit{Series: []*attribution.SeriesRecord{rec}}); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, s, key); len(got.Pending()) != 1 {
		t.Fatalf("outbox stored with %d pending events, want 1", len(got.Pending()))
	}
	for _, pos := range []int64{1, 3, 2} {
		if err := s.Ack(ctx, key, pos); err != nil {
			t.Fatal(err)
		}
	}
	if got := mustLoad(t, s, key); got.Published != 3 || got.Version != 1 || len(got.Pending()) != 0 {
		t.Fatalf("after acks: published %d version %d, %d pending; want 3, 1 and 0", got.Published, got.Version, len(got.Pending()))
	}
}

func testConcurrentCommits(t *testing.T, s Backend) {
	ctx := context.Background()
	th := attribution.DefaultThresholds()
	key := newKey("concurrent")
	if err := s.Commit(ctx, commitOne(attribution.NewSeriesRecord(key, attribution.Categorical, th), observation("r0", 1, `"typed"`), "")); err != nil {
		t.Fatal(err)
	}
	base := mustLoad(t, s, key)
	const writers = 6
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Commit(ctx, commitOne(base.Clone(), observation(fmt.Sprintf("r%d", i+1), float64(i+2), `"typed"`), ""))
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, attribution.ErrVersionConflict):
			t.Errorf("unexpected error: %v", err)
		}
	}
	obs, _ := s.LoadObservations(ctx, key)
	if won != 1 || len(obs) != 2 || mustLoad(t, s, key).Series.Count != 2 {
		t.Fatalf("%d writers won, %d observations stored; want exactly one winner", won, len(obs))
	}
}

func testMembershipCommit(t *testing.T, s Backend) {
	ctx := context.Background()
	th := attribution.DefaultThresholds()
	stub := attribution.StubIdentityID("att-m")
	if _, err := s.Identity(ctx, "att-m", stub); err != nil {
		t.Fatal(err)
	}
	first, err := s.LoadAttacker(ctx, "att-m")
	if err != nil || first.IdentityUUID != stub || first.Version != 0 || !first.Stamp.IsZero() {
		t.Fatalf("first sighting's attacker record: %+v, %v", first, err)
	}
	unseen, err := s.LoadAttacker(ctx, "att-unseen")
	if err != nil || unseen.IdentityUUID != "" || unseen.Version != 0 {
		t.Fatalf("attacker never seen: %+v, %v", unseen, err)
	}
	key := attribution.SeriesKey{IdentityUUID: "id-m", Primitive: "motor.input_modality"}
	if err := s.Commit(ctx, commitOne(attribution.NewSeriesRecord(key, attribution.Categorical, th), observation("r1", 1, `"x"`), "")); err != nil {
		t.Fatal(err)
	}
	rec := mustLoad(t, s, key)
	ident, err := s.LoadIdentity(ctx, "id-m", true)
	if err != nil {
		t.Fatal(err)
	}
	stamp := attribution.Stamp{TS: 1714054176.25, ID: "e-1"}
	moved := *first
	moved.IdentityUUID, moved.Stamp, moved.Unflushed = "id-m", stamp, []string{stub, "id-m"} // sorted: a stub is hex
	ident.Members, ident.Membered, ident.Membership = []string{"att-m"}, true, 1
	ident.Report = &attribution.Report{Field: "payload.resurrected_uuid", Message: "kept with the stamp it was raised about"}
	rec.Membership = 1
	other := attribution.NewSeriesRecord(attribution.SeriesKey{IdentityUUID: "id-m", Primitive: "cognitive.command_planning"}, attribution.Categorical, th)
	other.Membership = 1
	change := &attribution.MembershipCommit{
		Attackers:  []*attribution.AttackerRecord{&moved},
		Identities: []*attribution.IdentityRecord{ident},
		Series:     []*attribution.SeriesRecord{rec, other},
	}
	if err := s.CommitMembership(ctx, change); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadAttacker(ctx, "att-m")
	if err != nil || got.IdentityUUID != "id-m" || got.Stamp != stamp || got.Version != 1 || !slices.Equal(got.Unflushed, moved.Unflushed) {
		t.Fatalf("attacker after the change: %+v, %v", got, err)
	}
	if id, err := s.Identity(ctx, "att-m", stub); err != nil || id != "id-m" {
		t.Fatalf("identity after the change: %q, %v", id, err)
	}
	all, err := s.LoadIdentitySeries(ctx, "id-m")
	if err != nil || len(all) != 2 || all[key.Primitive] == nil || all[key.Primitive].Version != 2 || all[key.Primitive].Membership != 1 {
		t.Fatalf("series of the identity: %+v, %v", all, err)
	}
	storedIdent, err := s.LoadIdentity(ctx, "id-m", true)
	if err != nil || storedIdent.Version != ident.Version+1 || !storedIdent.HasMember("id-m", "att-m") || storedIdent.Membership != 1 || !reflect.DeepEqual(storedIdent.Report, ident.Report) {
		t.Fatalf("identity record after the change: %+v, %v", storedIdent, err)
	}
	// A change planned on what was read before conflicts, whichever item is
	// stale, and writes nothing.
	for name, stale := range map[string]func(*attribution.MembershipCommit){
		"attacker": func(c *attribution.MembershipCommit) { c.Attackers[0].Version = 0 },
		"identity": func(c *attribution.MembershipCommit) { c.Identities[0].Version = ident.Version },
		"series":   func(c *attribution.MembershipCommit) { c.Series[0].Version = 1 },
	} {
		again := *got
		again.IdentityUUID = "id-other"
		fresh := storedIdent.Clone()
		fresh.Members = nil
		freshRec := all[key.Primitive].Clone()
		c := &attribution.MembershipCommit{
			Attackers:  []*attribution.AttackerRecord{&again},
			Identities: []*attribution.IdentityRecord{fresh},
			Series:     []*attribution.SeriesRecord{freshRec},
		}
		stale(c)
		if err := s.CommitMembership(ctx, c); !errors.Is(err, attribution.ErrVersionConflict) {
			t.Fatalf("stale %s: err = %v, want a version conflict", name, err)
		}
		if a, _ := s.LoadAttacker(ctx, "att-m"); a.IdentityUUID != "id-m" || a.Version != 1 {
			t.Fatalf("stale %s: the attacker was written: %+v", name, a)
		}
		if i, _ := s.LoadIdentity(ctx, "id-m", true); i.Version != storedIdent.Version {
			t.Fatalf("stale %s: the identity record was written", name)
		}
	}
	// A first sighting after the attacker was named keeps what was named.
	named := &attribution.AttackerRecord{AttackerUUID: "att-named", IdentityUUID: "id-m", Stamp: stamp}
	if err := s.CommitMembership(ctx, &attribution.MembershipCommit{Attackers: []*attribution.AttackerRecord{named}}); err != nil {
		t.Fatal(err)
	}
	if id, err := s.Identity(ctx, "att-named", attribution.StubIdentityID("att-named")); err != nil || id != "id-m" {
		t.Fatalf("first sighting of an attacker an identity event named: %q, %v", id, err)
	}
}

func testIdentityOutbox(t *testing.T, s Backend) {
	ctx := context.Background()
	rec, err := s.LoadIdentity(ctx, "id-outbox", true)
	if err != nil {
		t.Fatal(err)
	}
	rec.Parent = "id-winner"
	rec.Outbox = []attribution.Event{{ID: "e1", DetailType: attribution.EventIdentityRekeyed, Position: 1, Detail: []byte(`{}`)}}
	rec.NextPosition = 1
	if err := s.CommitMembership(ctx, &attribution.MembershipCommit{Identities: []*attribution.IdentityRecord{rec}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadIdentity(ctx, "id-outbox", true)
	if err != nil || len(got.Pending()) != 1 || got.Parent != "id-winner" {
		t.Fatalf("stored identity record: %+v, %v", got, err)
	}
	if err := s.Ack(ctx, attribution.SeriesKey{IdentityUUID: "id-outbox", Primitive: attribution.IdentityRecordKey}, 1); err != nil {
		t.Fatal(err)
	}
	if got, err = s.LoadIdentity(ctx, "id-outbox", true); err != nil || len(got.Pending()) != 0 || got.Version != 1 {
		t.Fatalf("after the ack: %+v, %v", got, err)
	}
	if series, err := s.LoadIdentitySeries(ctx, "id-outbox"); err != nil || len(series) != 0 {
		t.Fatalf("the identity record is not a series: %+v, %v", series, err)
	}
}
