package crash_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
	"decnet-attribution/internal/testrig/chaos/crash"
)

func TestPlanFiresOncePerChosenSite(t *testing.T) {
	plan := &crash.Plan{Seed: 1, Rates: map[crash.Point]float64{crash.AfterCommit: 0.3}, Once: &crash.MemoryOnce{}}
	again := &crash.Plan{Seed: 1, Rates: map[crash.Point]float64{crash.AfterCommit: 0.3}}
	fired := 0
	for i := 0; i < 1000; i++ {
		site := string(rune('a'+i%26)) + string(rune('a'+i/26))
		first := plan.Fire(crash.AfterCommit, site)
		if first != again.Fire(crash.AfterCommit, site) {
			t.Fatalf("site %s: the choice depends on more than the seed and the site", site)
		}
		if first {
			fired++
			if plan.Fire(crash.AfterCommit, site) {
				t.Fatalf("site %s fired twice", site)
			}
		}
		if plan.Fire(crash.AfterPublish, site) {
			t.Fatalf("a point with no rate fired")
		}
	}
	if fired < 200 || fired > 400 {
		t.Errorf("%d of 1000 sites fired at rate 0.3", fired)
	}
	var nilPlan *crash.Plan
	if nilPlan.Fire(crash.AfterCommit, "x") {
		t.Error("a nil plan fired")
	}
}

func TestDirOnceIsSharedAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	a, b := crash.DirOnce(dir), crash.DirOnce(dir) // as two processes see it
	if !a.First("after-commit s|1") || b.First("after-commit s|1") || !b.First("after-publish e2") {
		t.Fatal("markers are not shared through the directory")
	}
	sites, err := a.Sites()
	if err != nil {
		t.Fatal(err)
	}
	if len(sites) != 2 {
		t.Errorf("sites %v, want the two that fired", sites)
	}
	if crash.DirOnce(filepath.Join(dir, "missing")).First("x") {
		t.Error("an unusable directory must not fire (it could never stop)")
	}
}

func TestConfigFromEnv(t *testing.T) {
	want := crash.Config{Seed: 7, AfterCommit: 0.25, AfterPublish: 0.5, AfterMembership: 0.125, MarkerDir: "/m", AppliedLog: "/a.jsonl", ProbeEndpoint: "http://127.0.0.1:1"}
	env := map[string]string{}
	for _, kv := range want.Env() {
		for i := range kv {
			if kv[i] == '=' {
				env[kv[:i]] = kv[i+1:]
				break
			}
		}
	}
	got, err := crash.ConfigFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("ConfigFromEnv(Env()) = %+v, %v; want %+v", got, err, want)
	}
	bad := []map[string]string{
		{crash.EnvAfterCommit: "2", crash.EnvMarkerDir: "/m"},
		{crash.EnvAfterPublish: "often", crash.EnvMarkerDir: "/m"},
		{crash.EnvAfterCommit: "0.1"}, // no marker directory
		{crash.EnvSeed: "-1"},
		{crash.EnvAppliedLog: "/a"}, // no probe endpoint
	}
	for _, vars := range bad {
		if _, err := crash.ConfigFromEnv(func(k string) (string, bool) { v, ok := vars[k]; return v, ok }); err == nil {
			t.Errorf("ConfigFromEnv(%v) accepted", vars)
		}
	}
}

// memRecorder records in memory.
type memRecorder struct{ applied, unknown [][]attribution.Observation }

func (r *memRecorder) Applied(obs []attribution.Observation) { r.applied = append(r.applied, obs) }
func (r *memRecorder) Unknown(obs []attribution.Observation) { r.unknown = append(r.unknown, obs) }

func newCommit(ref string, version int64) *attribution.Commit {
	key := attribution.SeriesKey{IdentityUUID: "id-1", Primitive: "motor.input_modality"}
	obs := attribution.Observation{Primitive: key.Primitive, Value: `"typed"`, EvidenceRef: ref, TS: 1, AttackerUUID: "att-1"}
	rec := attribution.NewSeriesRecord(key, attribution.Categorical, attribution.DefaultThresholds())
	rec.Version = version
	rec.AttackerUUID = "att-1 " + ref // what the commit writes differs from commit to commit
	return &attribution.Commit{Observations: []attribution.ObservationWrite{{Key: key, Observation: obs}}, Series: []*attribution.SeriesRecord{rec}, Applied: []attribution.Observation{obs}}
}

var errDied = errors.New("died")

func TestStoreDiesAfterTheCommitIsStored(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	dead := false
	var diedAt []string
	rec := &memRecorder{}
	s := &crash.Store{
		Store: mem, Probe: mem, Recorder: rec,
		Plan: &crash.Plan{Rates: map[crash.Point]float64{crash.AfterCommit: 1, crash.AfterPublish: 1}, Once: &crash.MemoryOnce{}},
		Die: func(p crash.Point, site string) error {
			dead, diedAt = true, append(diedAt, string(p)+" "+site)
			return errDied
		},
		Dead: func() bool { return dead },
	}
	if err := s.Commit(ctx, newCommit("ref-1", 0)); !errors.Is(err, errDied) {
		t.Fatalf("Commit = %v, want the death", err)
	}
	got, _ := mem.LoadSeries(ctx, "id-1", []string{"motor.input_modality"}, true)
	if got["motor.input_modality"] == nil {
		t.Fatal("the commit was not stored before the death")
	}
	if len(rec.applied) != 1 || diedAt[0] != "after-commit "+attribution.StubIdentityID("att-1")+"|motor.input_modality|ref-1" {
		t.Errorf("applied %v, died at %v", rec.applied, diedAt)
	}
	if _, err := s.LoadSeries(ctx, "id-1", nil, true); !errors.Is(err, crash.ErrCrashed) {
		t.Errorf("a dead instance still reads: %v", err)
	}
	dead = false
	// Ack has no crash point: it acknowledges.
	if err := s.Ack(ctx, attribution.SeriesKey{IdentityUUID: "id-1", Primitive: "motor.input_modality"}, 1); err != nil {
		t.Errorf("Ack = %v, want it passed through", err)
	}
	if len(diedAt) != 1 {
		t.Errorf("Ack crashed: died at %v", diedAt)
	}
	recs, _ := mem.LoadSeries(ctx, "id-1", []string{"motor.input_modality"}, true)
	if got := recs["motor.input_modality"].Published; got != 1 {
		t.Errorf("acknowledged position %d after Ack(1)", got)
	}
	dead = true
	if err := s.Ack(ctx, attribution.SeriesKey{IdentityUUID: "id-1", Primitive: "motor.input_modality"}, 1); !errors.Is(err, crash.ErrCrashed) {
		t.Errorf("a dead instance still acknowledges: %v", err)
	}
}

// busStub records what the bus accepted, or fails.
type busStub struct {
	accepted []attribution.Event
	fail     error
}

func (b *busStub) Publish(_ context.Context, events []attribution.Event) error {
	if b.fail != nil {
		return b.fail
	}
	b.accepted = append(b.accepted, events...)
	return nil
}

func TestPublisherDiesAfterTheBusAcceptedTheBatch(t *testing.T) {
	ctx := context.Background()
	bus := &busStub{}
	dead := false
	var diedAt []string
	p := &crash.Publisher{
		Publisher: bus,
		Plan:      &crash.Plan{Rates: map[crash.Point]float64{crash.AfterPublish: 1}, Once: &crash.MemoryOnce{}},
		Die: func(pt crash.Point, site string) error {
			dead, diedAt = true, append(diedAt, string(pt)+" "+site)
			return errDied
		},
		Dead: func() bool { return dead },
	}
	batch := []attribution.Event{{ID: "e1", DetailType: attribution.EventStateChanged}, {ID: "e2", DetailType: attribution.EventStateChanged}}
	if err := p.Publish(ctx, batch); !errors.Is(err, errDied) {
		t.Fatalf("Publish = %v, want the death", err)
	}
	if len(bus.accepted) != 2 || len(diedAt) != 1 || diedAt[0] != "after-publish e1" {
		t.Fatalf("accepted %v, died at %v; want both events accepted, then a death at the first event's ID", bus.accepted, diedAt)
	}
	if err := p.Publish(ctx, batch); !errors.Is(err, crash.ErrCrashed) || len(bus.accepted) != 2 {
		t.Errorf("a dead instance still publishes: %v, accepted %d", err, len(bus.accepted))
	}
	dead = false // the redelivery, on a new instance: the same events, the same site
	if err := p.Publish(ctx, batch); err != nil || len(bus.accepted) != 4 {
		t.Errorf("the redelivery: %v, accepted %d; want the batch published again without a second crash", err, len(bus.accepted))
	}
	if err := p.Publish(ctx, nil); err != nil {
		t.Errorf("an empty batch: %v", err)
	}
	bus.fail = errors.New("throttled")
	if err := p.Publish(ctx, []attribution.Event{{ID: "e3"}}); err == nil || errors.Is(err, errDied) || len(diedAt) != 1 {
		t.Errorf("a batch the bus refused: %v, died at %v; want the bus' error and no death", err, diedAt)
	}
}

// lostAnswer stores the commit and then reports a failure, as a connection
// dropped after the request reached DynamoDB.
type lostAnswer struct{ attribution.Store }

func (l lostAnswer) Commit(ctx context.Context, c *attribution.Commit) error {
	if err := l.Store.Commit(ctx, c); err != nil {
		return err
	}
	return errors.New("connection reset")
}

func TestRecorderProbesFailedCommits(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	rec := &memRecorder{}
	s := &crash.Store{Store: lostAnswer{mem}, Probe: mem, Recorder: rec}
	if err := s.Commit(ctx, newCommit("ref-1", 0)); err == nil {
		t.Fatal("the lost answer did not fail the commit")
	}
	if len(rec.applied) != 1 {
		t.Fatalf("a commit stored with its answer lost is not recorded as applied: %v", rec.applied)
	}
	// Not stored: the version does not match, nothing changes.
	if err := s.Commit(ctx, newCommit("ref-2", 0)); err == nil {
		t.Fatal("a stale commit succeeded")
	}
	if len(rec.applied) != 1 || len(rec.unknown) != 0 {
		t.Errorf("a rejected commit was recorded: applied %v unknown %v", rec.applied, rec.unknown)
	}
	s.Probe = nil
	if err := s.Commit(ctx, newCommit("ref-3", 0)); err == nil {
		t.Fatal("a stale commit succeeded")
	}
	if len(rec.unknown) != 1 {
		t.Errorf("without a probe a failed commit is of unknown outcome: %v", rec.unknown)
	}
}

func TestFileRecorderRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "applied.jsonl")
	r, err := crash.OpenFileRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	c := newCommit("ref-1", 0)
	r.Applied([]attribution.Observation{c.Observations[0].Observation})
	r.Unknown([]attribution.Observation{c.Observations[0].Observation})
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	entries, err := crash.ReadLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Outcome != crash.OutcomeApplied || entries[1].Outcome != crash.OutcomeUnknown ||
		entries[0].Observations[0].Fingerprint() != c.Observations[0].Observation.Fingerprint() {
		t.Errorf("entries %+v", entries)
	}
	if missing, err := crash.ReadLog(filepath.Join(t.TempDir(), "none")); err != nil || missing != nil {
		t.Errorf("a missing log: %v, %v; want empty", missing, err)
	}
}

func TestStoreDiesAfterTheMembershipChangeIsStored(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	dead := false
	var diedAt []string
	s := &crash.Store{
		Store: mem,
		Plan:  &crash.Plan{Rates: map[crash.Point]float64{crash.AfterMembership: 1}, Once: &crash.MemoryOnce{}},
		Die: func(p crash.Point, site string) error {
			dead, diedAt = true, append(diedAt, string(p)+" "+site)
			return errDied
		},
		Dead: func() bool { return dead },
	}
	node := &attribution.IdentityRecord{IdentityUUID: "I1"}
	node.Members, node.Membered, node.Membership = []string{"att-1"}, true, 1
	change := &attribution.MembershipCommit{
		Attackers:  []*attribution.AttackerRecord{{AttackerUUID: "att-1", IdentityUUID: "I1", Stamp: attribution.Stamp{TS: 1, ID: "e1"}}},
		Identities: []*attribution.IdentityRecord{node},
	}
	if err := s.CommitMembership(ctx, change); !errors.Is(err, errDied) {
		t.Fatalf("CommitMembership = %v, want the death", err)
	}
	if a, _ := mem.LoadAttacker(ctx, "att-1"); a.IdentityUUID != "I1" {
		t.Fatalf("the change was not stored before the death: attacker on %q", a.IdentityUUID)
	}
	if want := "after-membership att-1→I1@e1 I1#1"; len(diedAt) != 1 || diedAt[0] != want {
		t.Errorf("died at %v, want %q", diedAt, want)
	}
	if err := s.CommitMembership(ctx, change); !errors.Is(err, crash.ErrCrashed) {
		t.Errorf("a dead instance still commits: %v", err)
	}
	if _, err := s.LoadIdentitySeries(ctx, "I1"); !errors.Is(err, crash.ErrCrashed) {
		t.Errorf("a dead instance still reads: %v", err)
	}
}
