package attribution

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"decnet-attribution/internal/backoff"
)

// Metric names the processor counts.
const (
	MetricObservations     = "ObservationsProcessed"
	MetricDuplicates       = "Duplicates"
	MetricAmendments       = "Amendments"
	MetricTransitions      = "Transitions"
	MetricSuspicions       = "MultiActorSuspected"
	MetricVersionConflicts = "VersionConflicts"
	MetricRejected         = "RejectedMessages"
	MetricPublishFailures  = "PublishFailures"
	MetricMembership       = "MembershipChanges"
	MetricRekeyed          = "IdentitiesRekeyed"
	MetricIgnored          = "IgnoredEvents"
)

// Metrics counts what the processor does.
type Metrics interface {
	Add(name string, n int)
}

// MaxPendingEvents bounds a series' outbox (events the bus has not taken
// yet); past it new observations of the series wait until it has.
const MaxPendingEvents = 32

// Design is how a processor commits an observation.
type Design int

const (
	// Incremental commits each series with one conditional write of its
	// record, which holds the observations it applied inline; their items
	// are written after the commit, once the record overflows. The default.
	Incremental Design = iota
	// Transactional writes each observation's item with its record in one
	// transaction: no reads to tell a redelivery, twice the write units.
	Transactional
)

// Message is one queued message.
type Message struct {
	ID   string
	Body []byte
}

// Processor turns observation messages into state, transitions and events.
// It is the whole worker, behind the Store, Identities and Publisher ports.
type Processor struct {
	Store      Store
	Identities Identities
	Publisher  Publisher
	Registry   Registry
	Thresholds Thresholds
	Logger     *slog.Logger
	Metrics    Metrics

	// Design is how observations are committed (zero: Incremental).
	Design Design
	// FullRecompute reads the whole series for every observation, as the
	// reference worker does; it exists to measure that design.
	FullRecompute bool
	// MaxConflicts bounds the retries of a unit after version conflicts.
	MaxConflicts int
	// Concurrency bounds the identities processed at once.
	Concurrency int
	// Sleep waits between conflict retries (injectable for tests).
	Sleep func(context.Context, time.Duration)
	// Now tells the time seals are set and expire by (nil: the clock).
	Now func() time.Time
	// CacheBytes bounds the warm cache by the encoded size of what it
	// holds (0: DefaultCacheBytes); size it against the function's memory.
	CacheBytes int64

	cache cache
}

// outcome is where one observation message stands in its unit.
type outcome int

const (
	waiting   outcome = iota // not committed yet
	applied                  // committed: new, or amending the stored one
	duplicate                // already applied; what its series owes the bus goes out again
	settled                  // its error is final for this delivery (deferred or failed)
	rerouted                 // its identity's membership changed: routed again
)

// item is one valid observation message on its way through the processor.
type item struct {
	index int
	obs   Observation
	res   resolution     // where the attacker's observations go
	key   SeriesKey      // the series record: canonical identity|primitive
	ref   ObservationRef // its item: the attacker's stub|primitive, evidence ref
	state outcome
	err   error // the final error of a settled item
	// stored is what the store holds under ref (nil: nothing), once known
	// from the record, a lookup or a failed condition.
	stored *StoredObservation
	known  bool
}

// MaxCarriedEvents bounds the events an amendment takes over from the item
// of the transactional design it replaces, newest kept.
const MaxCarriedEvents = 8

// maxRoutings bounds how often one observation is routed again after its
// identity's membership changed under it, within one delivery.
const maxRoutings = 4

// Process handles a batch. It returns one error per message, nil for a
// message that is done. A message whose error has code EINVALID will never
// succeed; any other error is worth retrying. Identity events are applied
// first, in batch order; observations after them.
func (p *Processor) Process(ctx context.Context, msgs []Message) []error {
	p.cache.bound(p.CacheBytes)
	errs := make([]error, len(msgs))
	var items []*item
	for i, m := range msgs {
		d, err := Decode(m.Body)
		switch {
		case err != nil:
		case d.Ignored != "":
			p.count(MetricIgnored, 1)
			continue
		case d.Identity != nil:
			errs[i] = p.applyIdentityEvent(ctx, d.Identity)
			if ErrorCode(errs[i]) == EINVALID {
				p.count(MetricRejected, 1)
			}
			continue
		default:
			err = d.Observation.Validate(p.Registry.Kind(d.Observation.Primitive))
		}
		if err != nil {
			errs[i] = err
			p.count(MetricRejected, 1)
			continue
		}
		items = append(items, &item{index: i, obs: d.Observation})
	}
	for round := 0; len(items) > 0; round++ {
		if round == maxRoutings {
			for _, it := range items {
				errs[it.index] = &Error{Code: ECONFLICT, Message: fmt.Sprintf("the membership of attacker %s kept changing while its observation was routed; retry", it.obs.AttackerUUID)}
			}
			break
		}
		items = p.route(ctx, items, errs, round > 0)
	}
	return errs
}

// route groups items by the canonical identity of their attacker, applies
// each identity's items and returns those to route again.
func (p *Processor) route(ctx context.Context, items []*item, errs []error, consistent bool) []*item {
	units := make(map[string][]*item)
	var order []string
	for _, it := range items {
		res, err := p.resolve(ctx, it.obs.AttackerUUID, consistent)
		if err != nil {
			errs[it.index] = err
			continue
		}
		*it = item{index: it.index, obs: it.obs, res: res}
		it.key = SeriesKey{IdentityUUID: res.identity, Primitive: it.obs.Primitive}
		it.ref = ObservationRef{Key: SeriesKey{IdentityUUID: StubIdentityID(it.obs.AttackerUUID), Primitive: it.obs.Primitive}, Ref: it.obs.EvidenceRef}
		if _, seen := units[res.identity]; !seen {
			order = append(order, res.identity)
		}
		units[res.identity] = append(units[res.identity], it)
	}
	limit := make(chan struct{}, max(1, p.Concurrency))
	var wg sync.WaitGroup
	for _, identity := range order {
		limit <- struct{}{}
		wg.Add(1)
		go func(unit []*item) {
			defer func() { <-limit; wg.Done() }()
			u := &unitRun{p: p, identity: identity, items: unit, consistent: consistent}
			u.run(ctx)
			u.finish(ctx)
			for _, it := range unit {
				if it.state == settled {
					errs[it.index] = it.err
				}
			}
		}(units[identity])
	}
	wg.Wait()
	var again []*item
	for _, it := range items {
		if it.state == rerouted {
			again = append(again, it)
		}
	}
	return again
}

// unitRun applies the observations of one identity: it commits them in as
// few writes as their series allow, then writes the items the records let
// go of and publishes what the series owe the bus.
type unitRun struct {
	p          *Processor
	identity   string
	items      []*item
	consistent bool // after any failed commit the cache, and cheap reads, may be stale
	conflicts  int  // version conflicts in a row
	conditions int  // failed observation conditions (transactional design)
	committed  map[SeriesKey]bool
	// young holds the records this unit created by a single write: they
	// wait for verify.
	young map[SeriesKey]*creation
	// checked holds the young records this unit found visible to every
	// later membership change: only those may publish or spill.
	checked map[SeriesKey]bool
}

// creation is a record created by a single write: the membership it was
// computed under and the items it applied.
type creation struct {
	membership int64
	items      []*item
}

func (u *unitRun) run(ctx context.Context) {
	for {
		todo := u.inState(waiting)
		if len(todo) == 0 {
			return
		}
		in, err := u.prepare(ctx, todo)
		var pl *plan
		if err == nil {
			pl, err = u.p.plan(in)
		}
		switch {
		case errors.Is(err, errStaleResolution):
			// The identity's membership changed since the attackers were
			// resolved: route what is left again, from consistent reads.
			u.p.cache.forgetIdentity(u.identity)
			for _, it := range todo {
				it.state = rerouted
				u.p.cache.forgetAttackers([]string{it.obs.AttackerUUID})
			}
			return
		case err != nil:
			settle(todo, err)
			return
		}
		if !u.commit(ctx, pl) {
			return
		}
	}
}

func (u *unitRun) inState(s outcome) []*item {
	var out []*item
	for _, it := range u.items {
		if it.state == s {
			out = append(out, it)
		}
	}
	return out
}

// settle gives items their final error.
func settle(items []*item, err error) {
	for _, it := range items {
		it.state, it.err = settled, err
	}
}

// commit writes a plan's commits, each series on its own unless the
// identity record joins them, together, and settles each item by the
// outcome of its commit. It reports whether the unit goes on.
func (u *unitRun) commit(ctx context.Context, pl *plan) bool {
	results := make([]error, len(pl.commits))
	var wg sync.WaitGroup
	for i, c := range pl.commits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = u.p.Store.Commit(ctx, c)
		}()
	}
	wg.Wait()
	progress, conflict := false, false
	var conflictErr, unknown error
	for i, c := range pl.commits {
		owners := pl.owners[i]
		err := results[i]
		var exists *ObservationExistsError
		var gone *ObservationGoneError
		switch {
		case err == nil:
			u.p.cache.putCommitted(c)
			if u.committed == nil {
				u.committed = make(map[SeriesKey]bool)
			}
			for _, r := range c.Series {
				u.committed[r.Key] = true
				if r.Young {
					if u.young == nil {
						u.young = make(map[SeriesKey]*creation)
					}
					u.young[r.Key] = &creation{membership: r.Membership, items: owners}
				}
			}
			n := 0
			for _, it := range owners {
				if it.state == duplicate {
					continue // vouched for by the commit
				}
				it.state = applied
				n++
				if it.stored != nil {
					u.p.count(MetricAmendments, 1)
				}
			}
			u.p.count(MetricObservations, n)
			u.p.countCaused(pl.caused[i])
			progress = true
			continue
		case errors.As(err, &exists) && exists.Index < len(c.Observations):
			u.conditions++
			it := owners[exists.Index]
			it.stored, it.known = &exists.Stored, true
		case errors.As(err, &gone) && gone.Index < len(c.Observations):
			// The amended item expired or was deleted: nothing is left to
			// amend, so this is a new observation.
			u.conditions++
			it := owners[gone.Index]
			it.stored, it.known = nil, true
		case errors.Is(err, ErrVersionConflict):
			conflict, conflictErr = true, err
			u.p.count(MetricVersionConflicts, 1)
		default:
			// The commit may or may not have been stored: its messages are
			// delivered again and find out.
			settle(owners, err)
			unknown = err
		}
		for _, it := range owners {
			if it.state == duplicate {
				it.state = waiting // its record was not rewritten: it is planned again
			}
		}
		u.p.cache.forget(c)
		u.consistent = true
	}
	if unknown != nil {
		// What follows in the batch waits too: a later amendment of one of
		// them must not be applied before its redelivery.
		settle(u.inState(waiting), unknown)
		return false
	}
	if u.conditions > 2*len(u.items)+2 {
		settle(u.inState(waiting), errors.New("observation conditions keep failing"))
		return false
	}
	if !conflict {
		u.conflicts = 0
		return true
	}
	if progress {
		u.conflicts = 0 // only consecutive conflicts count
		return true
	}
	return u.conflicted(ctx, conflictErr)
}

// conflicted waits after a conflict and reports whether the unit goes on:
// not after too many in a row.
func (u *unitRun) conflicted(ctx context.Context, err error) bool {
	u.conflicts++
	if u.conflicts > u.p.maxConflicts() {
		settle(u.inState(waiting), fmt.Errorf("gave up after %d version conflicts in a row: %w", u.conflicts, err))
		return false
	}
	u.p.sleep(ctx, conflictDelay(u.conflicts))
	return true
}

// finish writes the items the committed records let go of and publishes
// what the touched series owe the bus: both follow the commit, so neither
// waits for the other. Earlier commits of the unit may have stored events
// even if a later one failed: they go out too.
func (u *unitRun) finish(ctx context.Context) {
	var keys []SeriesKey
	// Records that failed verification are neither spilled nor published.
	seen := u.verify(ctx)
	var legacy []Event // events stored on the items of redelivered observations
	owners := make(map[string]SeriesKey)
	for _, it := range u.items {
		if it.state == rerouted {
			continue
		}
		if !seen[it.key] {
			seen[it.key] = true
			keys = append(keys, it.key)
		}
		if it.state == duplicate && it.stored != nil {
			for _, e := range it.stored.Events {
				if _, dup := owners[e.ID]; !dup {
					legacy = append(legacy, e)
					owners[e.ID] = it.key
				}
			}
		}
	}
	if len(keys) == 0 {
		return
	}
	records, err := u.p.cachedRecords(ctx, keys)
	if err != nil {
		u.failSeries(nil, err)
		return
	}
	for k, r := range records {
		if r.Young && !u.checked[k] {
			delete(records, k) // not known to be visible: it waits for a check
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		u.p.spill(ctx, records)
	}()
	var events []Event
	for _, k := range keys {
		r := records[k]
		if r == nil {
			continue
		}
		for _, e := range r.Pending() {
			if _, dup := owners[e.ID]; !dup {
				events = append(events, e)
				owners[e.ID] = k
			}
		}
	}
	events = append(events, legacy...)
	d, err := u.p.courier().Deliver(ctx, events, owners)
	u.p.acknowledge(ctx, d.Acked, u.committed)
	if len(d.Blocked) > 0 {
		u.failSeries(d.Blocked, fmt.Errorf("publish events: %w", err))
	}
	wg.Wait()
}

// verify reads the identity record consistently after the unit created
// records by single writes. Unsealed, canonical and under the membership
// they were computed under, it shows that no membership change has read
// the identity's records since before they were written, so every later
// one sees them. Otherwise a change may have missed them: their items
// are not written, their events not published, and their observations
// are routed again (a record missed is an orphan, replaced by the next
// writer). It returns the keys of the records that failed.
func (u *unitRun) verify(ctx context.Context) map[SeriesKey]bool {
	failed := make(map[SeriesKey]bool)
	if len(u.young) == 0 {
		return failed
	}
	ident, err := u.p.Store.LoadIdentity(ctx, u.identity, true)
	if err == nil && ident.Seal.IsZero() {
		ident.IdentityUUID = u.identity
		u.p.cache.putIdentity(ident)
	}
	for key, c := range u.young {
		ok := err == nil && ident.Seal.IsZero() && ident.Parent == "" && ident.Membership == c.membership
		for _, it := range c.items {
			ok = ok && ident.HasMember(u.identity, it.obs.AttackerUUID)
		}
		if ok {
			u.check(key)
			continue
		}
		failed[key] = true
		delete(u.committed, key)
		u.p.cache.forget(&Commit{Series: []*SeriesRecord{{Key: key}}})
		u.p.count(MetricVersionConflicts, 1)
		if err != nil {
			settle(c.items, fmt.Errorf("series %s was created, but identity %s could not be read to check it: %w", key, u.identity, err))
			continue
		}
		for _, it := range c.items {
			it.state = rerouted
			u.p.cache.forgetAttackers([]string{it.obs.AttackerUUID})
		}
	}
	if len(failed) > 0 {
		u.p.cache.forgetIdentity(u.identity)
	}
	return failed
}

func (u *unitRun) check(key SeriesKey) {
	if u.checked == nil {
		u.checked = make(map[SeriesKey]bool)
	}
	u.checked[key] = true
}

// acknowledge records how far the bus took each series' outbox. A series
// this unit committed keeps the position in the cache, and its next commit
// writes it at no cost; one it only touched (a redelivery, a rebuild's
// outbox) gets an acknowledgement of its own, or every new processor
// would publish those events again.
func (p *Processor) acknowledge(ctx context.Context, acked map[SeriesKey]int64, committed map[SeriesKey]bool) {
	var wg sync.WaitGroup
	for k, pos := range acked {
		if committed[k] {
			p.cache.ack(k, pos)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Store.Ack(ctx, k, pos); err != nil {
				// Harmless: the events go out again, with the same IDs.
				p.logger().WarnContext(ctx, "acknowledge outbox", "series", k.String(), "position", pos, "error", err)
				return
			}
			p.cache.ack(k, pos)
		}()
	}
	wg.Wait()
}

// failSeries fails the items of the given series (all when keys is nil)
// that are done so far: their messages come back and publish again.
func (u *unitRun) failSeries(keys map[SeriesKey]bool, err error) {
	for _, it := range u.items {
		if (it.state == applied || it.state == duplicate) && (keys == nil || keys[it.key]) {
			it.state, it.err = settled, err
		}
	}
}

// cachedRecords returns the records of keys, all of one identity, from
// the cache where they are (after a commit they are), else the store.
func (p *Processor) cachedRecords(ctx context.Context, keys []SeriesKey) (map[SeriesKey]*SeriesRecord, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	primitives := make([]string, len(keys))
	for i, k := range keys {
		primitives[i] = k.Primitive
	}
	recs, err := p.loadRecords(ctx, keys[0].IdentityUUID, primitives, false)
	if err != nil {
		return nil, err
	}
	out := make(map[SeriesKey]*SeriesRecord, len(keys))
	for _, k := range keys {
		out[k] = recs[k.Primitive]
	}
	return out, nil
}

// spill writes the items of the inline observations the records let go of.
// Nothing waits on it: until the next commit of a record lets go of them,
// they stay inline, and a failed write is tried again then.
func (p *Processor) spill(ctx context.Context, records map[SeriesKey]*SeriesRecord) {
	var writes []ObservationWrite
	written := make(map[SeriesKey][]ObservationRef)
	for k, rec := range records {
		for _, o := range rec.overflow() {
			if !o.written {
				writes = append(writes, o.Write())
				written[k] = append(written[k], o.Ref())
			}
		}
	}
	if len(writes) == 0 {
		return
	}
	if err := p.Store.PutObservations(ctx, writes); err != nil {
		p.logger().WarnContext(ctx, "write observation items; they stay in their records", "items", len(writes), "error", err)
		return
	}
	for k, refs := range written {
		p.cache.markWritten(k, refs)
	}
}

func (p *Processor) maxConflicts() int {
	if p.MaxConflicts > 0 {
		return p.MaxConflicts
	}
	return 8
}

// conflictDelay is exponential with full jitter, capped at one second.
func conflictDelay(attempt int) time.Duration {
	return backoff.Jitter(attempt+1, 10*time.Millisecond, time.Second)
}

func (p *Processor) sleep(ctx context.Context, d time.Duration) {
	if p.Sleep != nil {
		p.Sleep(ctx, d)
		return
	}
	_ = backoff.Sleep(ctx, d) // a done context ends the unit at its next step
}

func (p *Processor) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// countCaused counts the events committed observations caused; counted
// at planning, a plan retried after a conflict would count them again.
func (p *Processor) countCaused(events []Event) {
	for _, e := range events {
		switch e.DetailType {
		case EventStateChanged:
			p.count(MetricTransitions, 1)
		case EventMultiActorSuspected:
			p.count(MetricSuspicions, 1)
		}
	}
}

func (p *Processor) count(name string, n int) {
	if p.Metrics != nil && n > 0 {
		p.Metrics.Add(name, n)
	}
}

func (p *Processor) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}
