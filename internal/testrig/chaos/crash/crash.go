// Package crash makes an attribution function die at chosen points of its
// work, for chaos runs, and records which observations it stored and in
// what order.
//
// The crash points are where a dying process leaves the most half-done
// work behind:
//
//   - AfterCommit: a commit (observations with the events they caused, and
//     series records, written in one transaction) has been stored, and
//     nothing has been published yet: the redelivery finds the
//     observations stored and publishes the events stored with them;
//   - AfterPublish: the bus has accepted a batch's events and the function
//     dies before reporting the batch, so the queue redelivers it and the
//     events are published again, with the same IDs;
//   - AfterMembership: a membership change (an identity event's attacker
//     and identity records with every series it recomputed or froze) has
//     been stored and nothing published: the redelivered identity event
//     changes nothing and must publish what the change left pending.
//
// A Plan chooses the crash sites: a site (a stored observation, a published
// batch named by its first event's ID) is chosen with the point's rate by a
// hash of the seed and the site, and crashes at most once (Once), so that a
// redelivered batch makes progress. Store and Publisher decorate the
// function's attribution.Store and attribution.Publisher with the plan;
// what dying means is the caller's: the crash test binary calls os.Exit,
// the in-process harness marks the instance dead.
//
// The production function never contains this package: only the chaos
// harness and its crash binary (internal/testrig/chaos/crashfn) import it.
package crash

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"decnet-attribution/internal/attribution"
)

// Point is a place in the function's work where it can die.
type Point string

// Crash points.
const (
	AfterCommit     Point = "after-commit"
	AfterPublish    Point = "after-publish"
	AfterMembership Point = "after-membership"
	// AfterSpill is after observation items a record let go of were
	// written, before the record's next commit lets go of them.
	AfterSpill Point = "after-spill"
)

// Points are the crash points, in the order of the function's work.
var Points = []Point{AfterCommit, AfterPublish, AfterMembership, AfterSpill}

// ExitCode is the status a crashing process exits with, told apart from
// other exits in the emulator's log.
const ExitCode = 86

// ErrCrashed is returned by the calls of a function instance that died.
var ErrCrashed = errors.New("function instance crashed")

// Once remembers the sites that already crashed.
type Once interface {
	// First reports whether site has not been seen before, and marks it.
	First(site string) bool
}

// Plan chooses the crash sites.
type Plan struct {
	Seed uint64
	// Rates is the share of sites of each point that crash.
	Rates map[Point]float64
	// Once, when set, lets each site crash only once.
	Once Once
}

// Fire reports whether the function must die at site of point now.
func (p *Plan) Fire(point Point, site string) bool {
	if p == nil {
		return false
	}
	rate := p.Rates[point]
	if rate <= 0 || Draw(p.Seed, string(point), site) >= rate {
		return false
	}
	return p.Once == nil || p.Once.First(string(point)+" "+site)
}

// Draw maps (seed, parts) to a number uniform in [0, 1), the same on every
// run and in every process.
func Draw(seed uint64, parts ...string) float64 {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seed)
	h.Write(b[:])
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return float64(binary.BigEndian.Uint64(h.Sum(nil))>>11) / (1 << 53)
}

// MemoryOnce is a Once for one process.
type MemoryOnce struct {
	mu   sync.Mutex
	seen map[string]bool
}

// First implements Once.
func (m *MemoryOnce) First(site string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen[site] {
		return false
	}
	if m.seen == nil {
		m.seen = make(map[string]bool)
	}
	m.seen[site] = true
	return true
}

// Sites returns the sites seen so far.
func (m *MemoryOnce) Sites() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.seen))
	for s := range m.seen {
		out = append(out, s)
	}
	return out
}

// DirOnce is a Once shared by the successive processes of a function: one
// marker file per crashed site in the directory, holding the site's name.
type DirOnce string

// First implements Once. If the marker cannot be created for another
// reason than its existence, it reports false: no crash is better than a
// crash that repeats forever.
func (d DirOnce) First(site string) bool {
	sum := sha256.Sum256([]byte(site))
	f, err := os.OpenFile(filepath.Join(string(d), hex.EncodeToString(sum[:12])), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return false
	}
	defer f.Close()
	_, _ = f.WriteString(site + "\n")
	return true
}

// Sites returns the sites whose markers are in the directory.
func (d DirOnce) Sites() ([]string, error) {
	entries, err := os.ReadDir(string(d))
	if err != nil {
		return nil, fmt.Errorf("read crash markers: %w", err)
	}
	var out []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(string(d), e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read crash marker: %w", err)
		}
		out = append(out, string(trimNewline(b)))
	}
	return out, nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// Recorder receives the observations of every commit known to be stored,
// in the order the function stored them.
type Recorder interface {
	// Applied records a stored commit.
	Applied(obs []attribution.Observation)
	// Unknown records a commit whose outcome could not be established.
	Unknown(obs []attribution.Observation)
}

// Store decorates an attribution.Store with crash points and, optionally,
// a record of the commits applied.
type Store struct {
	attribution.Store
	Plan *Plan
	// Die is called when the plan fires. The crash binary exits the
	// process; the in-process harness marks the instance dead and returns
	// the error the caller gets.
	Die func(point Point, site string) error
	// Dead, when set, reports an instance that died: every call fails
	// with ErrCrashed from then on.
	Dead func() bool
	// Recorder, when set, is told of every commit stored. A commit that
	// fails is looked up with Probe to tell whether it was stored anyway
	// (a lost response): its first series record is then at Version+1,
	// with the content the commit wrote. That tells commits apart when one
	// writer at a time works on an identity, as with a single poller; with
	// several, the record's order is not meaningful.
	Recorder Recorder
	// Probe reads the truth, bypassing faults and deaths.
	Probe attribution.Store
	// Order, when set, is told of the observations of every commit of
	// several, in the order the function applied them, stored or not.
	Order func(obs []attribution.Observation)

	// Exits is set where Die ends the process. A commit, its record and its
	// crash check then hold the store: the processor commits a unit's
	// series in parallel, and an exit after one must not cut another in
	// flight, which the Recorder's log could then not tell.
	Exits  bool
	serial sync.Mutex
}

var _ attribution.Store = (*Store)(nil)

func (s *Store) dead() bool { return s.Dead != nil && s.Dead() }

// LoadSeries implements attribution.Store.
func (s *Store) LoadSeries(ctx context.Context, identity string, primitives []string, consistent bool) (map[string]*attribution.SeriesRecord, error) {
	if s.dead() {
		return nil, ErrCrashed
	}
	return s.Store.LoadSeries(ctx, identity, primitives, consistent)
}

// LoadIdentity implements attribution.Store.
func (s *Store) LoadIdentity(ctx context.Context, identity string, consistent bool) (*attribution.IdentityRecord, error) {
	if s.dead() {
		return nil, ErrCrashed
	}
	return s.Store.LoadIdentity(ctx, identity, consistent)
}

// LoadObservations implements attribution.Store.
func (s *Store) LoadObservations(ctx context.Context, key attribution.SeriesKey) ([]attribution.Observation, error) {
	if s.dead() {
		return nil, ErrCrashed
	}
	return s.Store.LoadObservations(ctx, key)
}

// Commit implements attribution.Store: it commits, records the outcome and
// dies afterwards if the plan chooses one of the commit's observations.
func (s *Store) Commit(ctx context.Context, c *attribution.Commit) error {
	if s.dead() {
		return ErrCrashed
	}
	if s.Exits {
		s.serial.Lock()
		defer s.serial.Unlock()
	}
	if s.Order != nil && len(c.Applied) > 1 {
		s.Order(c.Applied)
	}
	err := s.Store.Commit(ctx, c)
	if s.Recorder != nil {
		s.record(ctx, c, err)
	}
	if err != nil {
		return err
	}
	for _, o := range c.Applied {
		site := attribution.StubIdentityID(o.AttackerUUID) + "|" + o.Primitive + "|" + o.EvidenceRef
		if s.Plan.Fire(AfterCommit, site) {
			return s.Die(AfterCommit, site)
		}
	}
	return nil
}

// LookupObservations implements attribution.Store.
func (s *Store) LookupObservations(ctx context.Context, refs []attribution.ObservationRef) (map[attribution.ObservationRef]attribution.StoredObservation, error) {
	if s.dead() {
		return nil, ErrCrashed
	}
	return s.Store.LookupObservations(ctx, refs)
}

// PutObservations implements attribution.Store: it writes and dies
// afterwards if the plan chooses one of the items.
func (s *Store) PutObservations(ctx context.Context, writes []attribution.ObservationWrite) error {
	if s.dead() {
		return ErrCrashed
	}
	if err := s.Store.PutObservations(ctx, writes); err != nil {
		return err
	}
	for _, w := range writes {
		site := w.Key.String() + "|" + w.Observation.EvidenceRef + fmt.Sprintf("@%d", w.Revision)
		if s.Plan.Fire(AfterSpill, site) {
			return s.Die(AfterSpill, site)
		}
	}
	return nil
}

// LoadIdentitySeries implements attribution.Store.
func (s *Store) LoadIdentitySeries(ctx context.Context, identity string) (map[string]*attribution.SeriesRecord, error) {
	if s.dead() {
		return nil, ErrCrashed
	}
	return s.Store.LoadIdentitySeries(ctx, identity)
}

// CommitMembership implements attribution.Store: it commits and dies
// afterwards if the plan chooses the change. The site names what the
// change writes (attackers with their new stamps, identities with their
// new membership versions), so a change planned again after a conflict is
// another site.
func (s *Store) CommitMembership(ctx context.Context, c *attribution.MembershipCommit) error {
	if s.dead() {
		return ErrCrashed
	}
	if err := s.Store.CommitMembership(ctx, c); err != nil {
		return err
	}
	if site := membershipSite(c); s.Plan.Fire(AfterMembership, site) {
		return s.Die(AfterMembership, site)
	}
	return nil
}

func membershipSite(c *attribution.MembershipCommit) string {
	var b strings.Builder
	for _, a := range c.Attackers {
		fmt.Fprintf(&b, "%s→%s@%s ", a.AttackerUUID, a.IdentityUUID, a.Stamp.ID)
	}
	for _, r := range c.Identities {
		fmt.Fprintf(&b, "%s#%d ", r.IdentityUUID, r.Membership)
	}
	return strings.TrimSpace(b.String())
}

// Ack implements attribution.Store. It has no crash point: the processing
// path acknowledges nothing (only outboxes left by a rebuild are).
func (s *Store) Ack(ctx context.Context, key attribution.SeriesKey, position int64) error {
	if s.dead() {
		return ErrCrashed
	}
	return s.Store.Ack(ctx, key, position)
}

func (s *Store) record(ctx context.Context, c *attribution.Commit, err error) {
	obs := c.Applied
	if err == nil {
		s.Recorder.Applied(obs)
		return
	}
	applied, known := s.stored(ctx, c)
	switch {
	case !known:
		s.Recorder.Unknown(obs)
	case applied:
		s.Recorder.Applied(obs)
	}
}

// stored tells whether a commit that returned an error was stored anyway.
func (s *Store) stored(ctx context.Context, c *attribution.Commit) (applied, known bool) {
	if s.Probe == nil || len(c.Series) == 0 {
		return false, false
	}
	first := c.Series[0]
	ctx = context.WithoutCancel(ctx)
	for attempt := 0; attempt < 10; attempt++ {
		recs, err := s.Probe.LoadSeries(ctx, first.Key.IdentityUUID, []string{first.Key.Primitive}, true)
		if err == nil {
			got := recs[first.Key.Primitive]
			return got != nil && got.Version == first.Version+1 && sameRecord(got, first), true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false, false
}

// sameRecord compares what a commit writes of a record (its stored fields:
// not the version, the key or the acknowledged position).
func sameRecord(a, b *attribution.SeriesRecord) bool {
	x, errA := json.Marshal(a)
	y, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(x) == string(y)
}

// Publisher decorates an attribution.Publisher with the AfterPublish crash
// point, and fails every call of an instance that died.
type Publisher struct {
	attribution.Publisher
	// Plan and Die are as in Store; a nil Plan never fires.
	Plan *Plan
	Die  func(point Point, site string) error
	// Dead, when set, reports an instance that died.
	Dead func() bool
}

var _ attribution.Publisher = (*Publisher)(nil)

// Publish implements attribution.Publisher: it publishes and, once the bus
// has accepted every event, dies if the plan chooses the batch. The site is
// the first event's ID, the same when a redelivery publishes the batch
// again.
func (p *Publisher) Publish(ctx context.Context, events []attribution.Event) error {
	if p.Dead != nil && p.Dead() {
		return ErrCrashed
	}
	if err := p.Publisher.Publish(ctx, events); err != nil {
		return err
	}
	if len(events) > 0 && p.Die != nil {
		if site := events[0].ID; p.Plan.Fire(AfterPublish, site) {
			return p.Die(AfterPublish, site)
		}
	}
	return nil
}
