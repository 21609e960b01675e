package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

var (
	ctx = context.Background()
	key = attribution.SeriesKey{IdentityUUID: "id-1", Primitive: "motor.input_modality"}
)

func obs(ref, value string) attribution.Observation {
	return attribution.Observation{Primitive: key.Primitive, EvidenceRef: ref, AttackerUUID: "att-1", TS: 1, Value: attribution.Value(value)}
}

func record(version int64) *attribution.SeriesRecord {
	r := attribution.NewSeriesRecord(key, attribution.Categorical, attribution.DefaultThresholds())
	r.Version = version
	return r
}

func mustCommit(tb testing.TB, s *memstore.Store, c *attribution.Commit) {
	tb.Helper()
	if err := s.Commit(ctx, c); err != nil {
		tb.Fatalf("commit: %v", err)
	}
}

func mustObservations(tb testing.TB, s *memstore.Store, k attribution.SeriesKey) map[string]attribution.Observation {
	tb.Helper()
	list, err := s.LoadObservations(ctx, k)
	if err != nil {
		tb.Fatalf("load observations: %v", err)
	}
	out := make(map[string]attribution.Observation)
	for _, o := range list {
		out[o.EvidenceRef] = o
	}
	return out
}

func mustSeries(tb testing.TB, s *memstore.Store) *attribution.SeriesRecord {
	tb.Helper()
	got, err := s.LoadSeries(ctx, key.IdentityUUID, []string{key.Primitive, "not.stored"}, true)
	if err != nil {
		tb.Fatalf("load series: %v", err)
	}
	if _, ok := got["not.stored"]; ok {
		tb.Errorf("a primitive without a record is present")
	}
	return got[key.Primitive]
}

func TestCommitConditions(t *testing.T) {
	a, b := obs("r1", `"typed"`), obs("r1", `"pasted"`)
	cases := []struct {
		name string
		// setup commits, then the commit under test
		setup   []*attribution.Commit
		commit  func() *attribution.Commit
		wantErr func(error) bool
		what    string
	}{
		{
			name: "new observation and record",
			commit: func() *attribution.Commit {
				return &attribution.Commit{Observations: []attribution.ObservationWrite{{Key: key, Observation: a}}, Series: []*attribution.SeriesRecord{record(0)}}
			},
			wantErr: func(err error) bool { return err == nil },
			what:    "no error",
		},
		{
			name:  "observation already stored",
			setup: []*attribution.Commit{{Observations: []attribution.ObservationWrite{{Key: key, Observation: a}}}},
			commit: func() *attribution.Commit {
				return &attribution.Commit{Observations: []attribution.ObservationWrite{{Key: key, Observation: b}}}
			},
			wantErr: func(err error) bool {
				var e *attribution.ObservationExistsError
				return errors.As(err, &e) && e.Index == 0 && e.Stored.Observation.Fingerprint() == a.Fingerprint()
			},
			what: "ObservationExistsError at index 0 carrying the stored observation",
		},
		{
			name:  "second observation of the commit exists",
			setup: []*attribution.Commit{{Observations: []attribution.ObservationWrite{{Key: key, Observation: obs("r2", "1")}}}},
			commit: func() *attribution.Commit {
				return &attribution.Commit{Observations: []attribution.ObservationWrite{{Key: key, Observation: a}, {Key: key, Observation: obs("r2", "2")}}}
			},
			wantErr: func(err error) bool {
				var e *attribution.ObservationExistsError
				return errors.As(err, &e) && e.Index == 1
			},
			what: "ObservationExistsError at index 1",
		},
		{
			name:  "amendment of the stored observation",
			setup: []*attribution.Commit{{Observations: []attribution.ObservationWrite{{Key: key, Observation: a}}}},
			commit: func() *attribution.Commit {
				return &attribution.Commit{Observations: []attribution.ObservationWrite{{Key: key, Observation: b, Replaces: a.Fingerprint()}}}
			},
			wantErr: func(err error) bool { return err == nil },
			what:    "no error",
		},
		{
			name:  "amendment of an observation replaced since",
			setup: []*attribution.Commit{{Observations: []attribution.ObservationWrite{{Key: key, Observation: a}}}},
			commit: func() *attribution.Commit {
				return &attribution.Commit{Observations: []attribution.ObservationWrite{{Key: key, Observation: b, Replaces: obs("r1", "0").Fingerprint()}}}
			},
			wantErr: func(err error) bool {
				var e *attribution.ObservationExistsError
				return errors.As(err, &e) && e.Stored.Observation.Fingerprint() == a.Fingerprint()
			},
			what: "ObservationExistsError carrying the stored observation",
		},
		{
			name: "amendment of an observation never stored",
			commit: func() *attribution.Commit {
				return &attribution.Commit{Observations: []attribution.ObservationWrite{{Key: key, Observation: b, Replaces: a.Fingerprint()}}}
			},
			wantErr: func(err error) bool {
				var e *attribution.ObservationGoneError
				return errors.As(err, &e) && e.Index == 0
			},
			what: "ObservationGoneError at index 0",
		},
		{
			name:    "new record already created",
			setup:   []*attribution.Commit{{Series: []*attribution.SeriesRecord{record(0)}}},
			commit:  func() *attribution.Commit { return &attribution.Commit{Series: []*attribution.SeriesRecord{record(0)}} },
			wantErr: func(err error) bool { return errors.Is(err, attribution.ErrVersionConflict) },
			what:    "a version conflict",
		},
		{
			name:   "record replaced since read",
			setup:  []*attribution.Commit{{Series: []*attribution.SeriesRecord{record(0)}}, {Series: []*attribution.SeriesRecord{record(1)}}},
			commit: func() *attribution.Commit { return &attribution.Commit{Series: []*attribution.SeriesRecord{record(1)}} },
			wantErr: func(err error) bool {
				return errors.Is(err, attribution.ErrVersionConflict) && attribution.ErrorCode(err) == attribution.ECONFLICT
			},
			what: "a version conflict",
		},
		{
			name:    "record at the version read",
			setup:   []*attribution.Commit{{Series: []*attribution.SeriesRecord{record(0)}}, {Series: []*attribution.SeriesRecord{record(1)}}},
			commit:  func() *attribution.Commit { return &attribution.Commit{Series: []*attribution.SeriesRecord{record(2)}} },
			wantErr: func(err error) bool { return err == nil },
			what:    "no error",
		},
		{
			name:  "identity replaced since read",
			setup: []*attribution.Commit{{Identity: &attribution.IdentityRecord{IdentityUUID: "id-1"}}},
			commit: func() *attribution.Commit {
				return &attribution.Commit{Identity: &attribution.IdentityRecord{IdentityUUID: "id-1", Version: 0}}
			},
			wantErr: func(err error) bool { return errors.Is(err, attribution.ErrVersionConflict) },
			what:    "a version conflict",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := memstore.New()
			for _, c := range tc.setup {
				mustCommit(t, s, c)
			}
			if err := s.Commit(ctx, tc.commit()); !tc.wantErr(err) {
				t.Fatalf("got %v, want %s", err, tc.what)
			}
		})
	}
}

// TestCommitAllOrNothing: a commit whose last condition fails writes none
// of its items.
func TestCommitAllOrNothing(t *testing.T) {
	s := memstore.New()
	mustCommit(t, s, &attribution.Commit{Series: []*attribution.SeriesRecord{record(0)}})
	stale := record(0) // the stored one is at version 1
	err := s.Commit(ctx, &attribution.Commit{
		Observations: []attribution.ObservationWrite{{Key: key, Observation: obs("r9", "1")}},
		Series:       []*attribution.SeriesRecord{stale},
		Identity:     &attribution.IdentityRecord{IdentityUUID: "id-1", Flagged: []string{"a.b"}},
	})
	if !errors.Is(err, attribution.ErrVersionConflict) {
		t.Fatalf("got %v, want a version conflict", err)
	}
	if got := mustObservations(t, s, key); len(got) != 0 {
		t.Errorf("observation written by a failed commit: %v", got)
	}
	id, err := s.LoadIdentity(ctx, "id-1", true)
	if err != nil || id.Version != 0 || len(id.Flagged) != 0 {
		t.Errorf("identity written by a failed commit: %+v, %v", id, err)
	}
}

// TestRecordsRoundTrip: versions advance by one per commit, loads return
// copies, and the acknowledged position is kept apart from writers.
func TestRecordsRoundTrip(t *testing.T) {
	s := memstore.New()
	r := record(0)
	r.Series.Add(attribution.Point{TS: 1, Ref: "r1", Value: `"typed"`})
	if _, err := r.Settle(r.Series.State(attribution.DefaultThresholds()), "att-1"); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, &attribution.Commit{Observations: []attribution.ObservationWrite{{Key: key, Observation: obs("r1", `"typed"`)}}, Series: []*attribution.SeriesRecord{r}})
	if r.Version != 0 {
		t.Errorf("Commit changed the caller's record version to %d", r.Version)
	}
	got := mustSeries(t, s)
	if got == nil || got.Version != 1 || got.Key != key || got.Current == nil || len(got.Pending()) != 1 {
		t.Fatalf("loaded %+v", got)
	}
	got.Series.Tail[0].Ref = "mutated"
	got.Outbox[0].ID = "mutated"
	if again := mustSeries(t, s); again.Series.Tail[0].Ref == "mutated" || again.Outbox[0].ID == "mutated" {
		t.Fatalf("LoadSeries returned the stored record, not a copy")
	}

	if err := s.Ack(ctx, key, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx, key, 0); err != nil {
		t.Fatal(err)
	}
	loaded := mustSeries(t, s)
	if loaded.Published != 1 || len(loaded.Pending()) != 0 {
		t.Errorf("after acks 1 then 0: published %d, %d pending", loaded.Published, len(loaded.Pending()))
	}
	// A writer that read before the ack does not undo it.
	loaded.Published = 0
	mustCommit(t, s, &attribution.Commit{Series: []*attribution.SeriesRecord{loaded}})
	if again := mustSeries(t, s); again.Version != 2 || again.Published != 1 {
		t.Errorf("after a write: version %d, published %d; want 2, 1", again.Version, again.Published)
	}
	if recs := s.Records(); len(recs) != 1 || recs[0].Published != 1 {
		t.Errorf("Records: %+v", recs)
	}

	ident, err := s.LoadIdentity(ctx, "id-1", true)
	if err != nil || ident.Version != 0 || ident.IdentityUUID != "id-1" {
		t.Fatalf("new identity record: %+v, %v", ident, err)
	}
	ident.Flagged = []string{"a.b"}
	mustCommit(t, s, &attribution.Commit{Identity: ident})
	stored, err := s.LoadIdentity(ctx, "id-1", true)
	if err != nil || stored.Version != 1 || len(stored.Flagged) != 1 {
		t.Fatalf("stored identity: %+v, %v", stored, err)
	}
	stored.Flagged[0] = "mutated"
	if again, _ := s.LoadIdentity(ctx, "id-1", true); again.Flagged[0] != "a.b" {
		t.Errorf("LoadIdentity returned the stored record, not a copy")
	}
}

func TestLoadObservationsAfterAmendment(t *testing.T) {
	s := memstore.New()
	a, b := obs("r1", `"typed"`), obs("r1", `"pasted"`)
	other := attribution.SeriesKey{IdentityUUID: "id-2", Primitive: key.Primitive}
	mustCommit(t, s, &attribution.Commit{Observations: []attribution.ObservationWrite{{Key: key, Observation: a}, {Key: key, Observation: obs("r2", "1")}, {Key: other, Observation: a}}})
	mustCommit(t, s, &attribution.Commit{Observations: []attribution.ObservationWrite{{Key: key, Observation: b, Replaces: a.Fingerprint()}}})
	got := mustObservations(t, s, key)
	if len(got) != 2 || got["r1"].Value != `"pasted"` {
		t.Errorf("series after the amendment: %v", got)
	}
	if got := mustObservations(t, s, other); len(got) != 1 || got["r1"].Value != `"typed"` {
		t.Errorf("the other series changed: %v", got)
	}
	if got := mustObservations(t, s, attribution.SeriesKey{IdentityUUID: "none", Primitive: "x.y"}); len(got) != 0 {
		t.Errorf("unknown series: %v", got)
	}
}

// TestIdentityFirstWins: concurrent first sightings of an attacker all
// get the identity stored first, and it never changes.
func TestIdentityFirstWins(t *testing.T) {
	s := memstore.New()
	const writers = 16
	got := make([]string, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := s.Identity(ctx, "att-1", fmt.Sprintf("proposal-%d", i))
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
			}
			got[i] = id
		}()
	}
	wg.Wait()
	for i, id := range got {
		if id != got[0] {
			t.Fatalf("writer %d got %q, writer 0 got %q", i, id, got[0])
		}
	}
	if id, _ := s.Identity(ctx, "att-1", "late"); id != got[0] {
		t.Errorf("the mapping changed to %q", id)
	}
	if id, _ := s.Identity(ctx, "att-2", "p2"); id != "p2" {
		t.Errorf("another attacker got %q", id)
	}
}

// TestConcurrentCommits: many writers race to create and update one
// record; each successful commit advances the version by exactly one.
func TestConcurrentCommits(t *testing.T) {
	s := memstore.New()
	const writers, rounds = 8, 25
	var mu sync.Mutex
	wins := 0
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				var version int64
				if r := mustSeriesOrNil(t, s); r != nil {
					version = r.Version
				}
				err := s.Commit(ctx, &attribution.Commit{
					Observations: []attribution.ObservationWrite{{Key: key, Observation: obs(fmt.Sprintf("w%d-%d", w, i), "1")}},
					Series:       []*attribution.SeriesRecord{record(version)},
				})
				switch {
				case err == nil:
					mu.Lock()
					wins++
					mu.Unlock()
				case !errors.Is(err, attribution.ErrVersionConflict):
					t.Errorf("writer %d: %v", w, err)
				}
			}
		}()
	}
	wg.Wait()
	r := mustSeriesOrNil(t, s)
	if r == nil || r.Version != int64(wins) {
		t.Fatalf("version %v after %d successful commits", r, wins)
	}
	if got := len(mustObservations(t, s, key)); got != wins {
		t.Errorf("%d observations stored by %d successful commits", got, wins)
	}
}

func mustSeriesOrNil(tb testing.TB, s *memstore.Store) *attribution.SeriesRecord {
	tb.Helper()
	got, err := s.LoadSeries(ctx, key.IdentityUUID, []string{key.Primitive}, true)
	if err != nil {
		tb.Errorf("load series: %v", err)
		return nil
	}
	return got[key.Primitive]
}

func TestRecordsSorted(t *testing.T) {
	s := memstore.New()
	keys := []attribution.SeriesKey{{IdentityUUID: "b", Primitive: "x.a"}, {IdentityUUID: "a", Primitive: "x.b"}, {IdentityUUID: "a", Primitive: "x.a"}}
	for _, k := range keys {
		r := attribution.NewSeriesRecord(k, attribution.Categorical, attribution.DefaultThresholds())
		mustCommit(t, s, &attribution.Commit{Series: []*attribution.SeriesRecord{r}})
	}
	var got []string
	for _, r := range s.Records() {
		got = append(got, r.Key.String())
	}
	if fmt.Sprint(got) != "[a|x.a a|x.b b|x.a]" {
		t.Errorf("Records order %v", got)
	}
}
