package attribution_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

// sealRig is a processor over memstore with a clock of its own, whose
// sleeps move that clock, and a store that counts how commits are made.
type sealRig struct {
	t     *testing.T
	store *countingStore
	proc  *attribution.Processor
	mu    sync.Mutex
	now   time.Time
}

// countingStore counts the commits that write the identity record (a
// transaction) and those of one record alone, and can run a hook once
// after the next read of an identity's records by a membership change.
type countingStore struct {
	*memstore.Store
	mu             sync.Mutex
	joint, single  int
	afterReadOnce  func()
	youngCommitted int
}

func (s *countingStore) Commit(ctx context.Context, c *attribution.Commit) error {
	err := s.Store.Commit(ctx, c)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		switch {
		case c.Identity != nil:
			s.joint++
		default:
			s.single++
			if c.Series[0].Young {
				s.youngCommitted++
			}
		}
	}
	return err
}

func (s *countingStore) LoadIdentitySeries(ctx context.Context, id string) (map[string]*attribution.SeriesRecord, error) {
	recs, err := s.Store.LoadIdentitySeries(ctx, id)
	s.mu.Lock()
	hook := s.afterReadOnce
	s.afterReadOnce = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	return recs, err
}

func newSealRig(t *testing.T) *sealRig {
	r := &sealRig{t: t, store: &countingStore{Store: memstore.New()}, now: time.Unix(1_800_000_000, 0)}
	r.proc = r.processor()
	return r
}

func (r *sealRig) processor() *attribution.Processor {
	return &attribution.Processor{Store: r.store, Identities: r.store, Publisher: &recorder{}, Registry: mustTestRegistry(r.t),
		Thresholds: attribution.DefaultThresholds(), Logger: quietLogger(), Concurrency: 1,
		Now: r.clock,
		Sleep: func(_ context.Context, d time.Duration) {
			r.mu.Lock()
			r.now = r.now.Add(d)
			r.mu.Unlock()
		}}
}

func (r *sealRig) clock() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.now
}

func (r *sealRig) must(p *attribution.Processor, bodies ...[]byte) {
	r.t.Helper()
	for _, b := range bodies {
		if err := p.Process(context.Background(), []attribution.Message{{ID: "m", Body: b}})[0]; err != nil {
			r.t.Fatal(err)
		}
	}
}

// seal stores the seal of an identity event that never commits.
func (r *sealRig) seal(id, event string, at time.Time) {
	r.t.Helper()
	n, err := r.store.LoadIdentity(context.Background(), id, true)
	if err != nil {
		r.t.Fatal(err)
	}
	n.IdentityUUID = id
	n.Seal, n.SealedAt = attribution.Stamp{TS: 1, ID: event}, float64(at.UnixNano())/1e9
	if err := r.store.CommitMembership(context.Background(), &attribution.MembershipCommit{Identities: []*attribution.IdentityRecord{n}}); err != nil {
		r.t.Fatal(err)
	}
}

func typed(attacker, prim, ref string, ts float64) []byte {
	return spec{Attacker: attacker, Primitive: prim, Ref: ref, TS: ts, Value: `"typed"`, Confidence: 0.9}.body()
}

// TestNewSeriesIsOneWrite: a series is created by one write of its record
// alone, young, and its next observation clears the mark in one write.
func TestNewSeriesIsOneWrite(t *testing.T) {
	r := newSealRig(t)
	r.must(r.proc, typed("a1", "motor.input_modality", "r1", 1))
	if r.store.joint != 0 || r.store.single != 1 || r.store.youngCommitted != 1 {
		t.Fatalf("creation: %d transactions, %d single writes (%d young); want one young single write", r.store.joint, r.store.single, r.store.youngCommitted)
	}
	r.must(r.processor(), typed("a1", "motor.input_modality", "r2", 2)) // a cold processor reads the young record
	recs, err := r.store.LoadIdentitySeries(context.Background(), attribution.StubIdentityID("a1"))
	if err != nil {
		t.Fatal(err)
	}
	rec := recs["motor.input_modality"]
	if r.store.joint != 0 || r.store.single != 2 || rec.Young || rec.Current.ObservationCount != 2 {
		t.Fatalf("next observation: %d transactions, %d single writes, young %v, count %d", r.store.joint, r.store.single, rec.Young, rec.Current.ObservationCount)
	}
}

// TestSealedIdentityTakesTransactions: while a membership change holds an
// identity, a new series of it is created in a transaction with the
// identity record, which keeps the seal; an expired seal is cleared by it.
func TestSealedIdentityTakesTransactions(t *testing.T) {
	r := newSealRig(t)
	stub := attribution.StubIdentityID("a1")
	r.seal(stub, "ev-live", r.clock())
	r.must(r.proc, typed("a1", "motor.input_modality", "r1", 1))
	n, _ := r.store.LoadIdentity(context.Background(), stub, true)
	if r.store.joint != 1 || r.store.youngCommitted != 0 || n.Seal.ID != "ev-live" {
		t.Fatalf("under a live seal: %d transactions, %d young writes, seal %+v; want one transaction keeping the seal", r.store.joint, r.store.youngCommitted, n.Seal)
	}
	r.seal(stub, "ev-dead", r.clock().Add(-2*attribution.SealLifetime))
	r.must(r.processor(), typed("a1", "environmental.locale", "r2", 2))
	n, _ = r.store.LoadIdentity(context.Background(), stub, true)
	if r.store.joint != 2 || !n.Seal.IsZero() {
		t.Fatalf("under an expired seal: %d transactions, seal %+v; want it cleared by a transaction", r.store.joint, n.Seal)
	}
}

// TestChangeWaitsForASealThenTakesItOver: a membership change that finds
// another change's seal waits until it expires (that change died), then
// takes it over and commits.
func TestChangeWaitsForASealThenTakesItOver(t *testing.T) {
	r := newSealRig(t)
	r.must(r.proc, typed("a1", "motor.input_modality", "r1", 1))
	stub := attribution.StubIdentityID("a1")
	start := r.clock()
	r.seal(stub, "ev-dead", start)
	r.must(r.processor(), busEvent(attribution.TopicIdentityFormed, "e1", 10, `{"identity_uuid":"I","observation_uuids":["a1"]}`))
	if waited := r.clock().Sub(start); waited < attribution.SealLifetime {
		t.Errorf("the change waited %v, less than a seal's lifetime", waited)
	}
	for _, id := range []string{stub, "I"} {
		if n, _ := r.store.LoadIdentity(context.Background(), id, true); !n.Seal.IsZero() {
			t.Errorf("identity %s keeps seal %+v after the change", id, n.Seal)
		}
	}
	recs, _ := r.store.LoadIdentitySeries(context.Background(), "I")
	if rec := recs["motor.input_modality"]; rec == nil || rec.Current.ObservationCount != 1 {
		t.Fatalf("I's series after the change: %+v", rec)
	}
}

// TestSeriesCreatedWhileAChangeReadsIsCountedOnce: a series is created
// after a membership change sealed its identity and read its records, and
// before the change commits. The creation's check finds the seal: the
// observation is not acknowledged from the young record but from a
// transaction that makes the change read again; counted once, in the
// identity the attacker ends up in.
func TestSeriesCreatedWhileAChangeReadsIsCountedOnce(t *testing.T) {
	r := newSealRig(t)
	r.must(r.proc, typed("a1", "motor.input_modality", "r1", 1))
	writer := r.processor()
	r.store.afterReadOnce = func() { r.must(writer, typed("a1", "environmental.locale", "r2", 2)) }
	r.must(r.processor(), busEvent(attribution.TopicIdentityFormed, "e1", 10, `{"identity_uuid":"I","observation_uuids":["a1"]}`))
	recs, _ := r.store.LoadIdentitySeries(context.Background(), "I")
	for prim, want := range map[string]int{"motor.input_modality": 1, "environmental.locale": 1} {
		if rec := recs[prim]; rec == nil || rec.Current.ObservationCount != want {
			t.Errorf("I|%s: %+v, want %d observation", prim, rec, want)
		}
	}
}
