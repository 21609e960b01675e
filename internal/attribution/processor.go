package attribution

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// MaxPendingEvents bounds a series' outbox (events of a rebuild the bus has
// not taken yet); past it new observations of the series wait until it has.
const MaxPendingEvents = 32

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

	// FullRecompute reads the whole series for every observation, as the
	// reference worker does; it exists to measure that design.
	FullRecompute bool
	// MaxConflicts bounds the retries of a unit after version conflicts.
	MaxConflicts int
	// Concurrency bounds the identities processed at once.
	Concurrency int
	// Sleep waits between conflict retries (injectable for tests).
	Sleep func(context.Context, time.Duration)
	// CacheBytes bounds the warm cache by the encoded size of what it
	// holds (0: DefaultCacheBytes); size it against the function's memory.
	CacheBytes int64

	cache cache
}

// item is one valid message on its way through the processor.
type item struct {
	index int
	obs   Observation
	res   resolution // where the attacker's observations go
	key   SeriesKey  // the series record: canonical identity|primitive
	store SeriesKey  // where the observation is stored: the attacker's stub|primitive
	// rerouted is set when the item's resolution proved stale: it is
	// resolved again and planned in another unit.
	rerouted  bool
	duplicate bool
	replaces  string // fingerprint of the stored observation this amends
	deferred  error  // set when the item must wait for a later delivery
	// events are those its stored observation caused: written by this
	// delivery, or found stored when it is a redelivery.
	events []Event
	// carried are the events stored with the observation an amendment
	// replaces: the bus may not have taken them yet, so they move to the
	// amendment's item and go out again with it.
	carried []Event
}

// MaxCarriedEvents bounds what a chain of amendments of one observation
// carries forward, newest kept, so the item stays small.
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
		it.res, it.rerouted = res, false
		it.key = SeriesKey{IdentityUUID: res.identity, Primitive: it.obs.Primitive}
		it.store = SeriesKey{IdentityUUID: StubIdentityID(it.obs.AttackerUUID), Primitive: it.obs.Primitive}
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
		go func(identity string, unit []*item) {
			defer func() { <-limit; wg.Done() }()
			p.processUnit(ctx, identity, unit, errs, consistent)
		}(identity, units[identity])
	}
	wg.Wait()
	var again []*item
	for _, it := range items {
		if it.rerouted {
			again = append(again, it)
		}
	}
	return again
}

// processUnit applies the observations of one identity in batch order,
// committing them in as few atomic writes as the store allows, then
// publishes the events they caused.
func (p *Processor) processUnit(ctx context.Context, identity string, unit []*item, errs []error, consistent bool) {
	pending := unit
	var touched []SeriesKey
	seen := make(map[SeriesKey]bool)
	touch := func(k SeriesKey) {
		if !seen[k] {
			seen[k] = true
			touched = append(touched, k)
		}
	}
	conflicts, resolutions := 0, 0
	// After any failed commit the cache may be stale and a cheap read may
	// be too: read consistently from then on.
	fail := func(items []*item, err error) {
		for _, it := range items {
			errs[it.index] = err
		}
	}
commits:
	for len(pending) > 0 {
		pl, err := p.plan(ctx, identity, pending, consistent)
		if errors.Is(err, errStaleResolution) {
			// The identity's membership changed since the attackers were
			// resolved: route what is left again, from consistent reads.
			p.cache.forgetIdentity(identity)
			for _, it := range pending {
				it.rerouted = true
				p.cache.forgetAttackers([]string{it.obs.AttackerUUID})
			}
			break
		}
		if err != nil {
			fail(pending, err)
			break
		}
		for _, it := range pending[:pl.consumed] {
			touch(it.key)
			if it.deferred != nil {
				errs[it.index] = it.deferred
			}
		}
		if len(pl.commit.Observations) == 0 {
			pending = pending[pl.consumed:] // duplicates only
			continue
		}
		err = p.Store.Commit(ctx, pl.commit)
		var exists *ObservationExistsError
		var gone *ObservationGoneError
		switch {
		case err == nil:
			p.cache.putCommitted(pl.commit)
			for i, w := range pl.commit.Observations {
				pl.writes[i].events = w.Events
				p.countCaused(w.Events[len(pl.writes[i].carried):])
			}
			p.count(MetricObservations, len(pl.commit.Observations))
			pending = pending[pl.consumed:]
			conflicts = 0 // progress: only consecutive conflicts count
		case errors.As(err, &exists) && exists.Index < len(pl.writes):
			p.cache.forget(pl.commit)
			consistent = true
			resolutions++
			if resolutions > 2*len(unit)+2 {
				fail(pending, fmt.Errorf("observation conditions keep failing: %w", err))
				break commits
			}
			it := pl.writes[exists.Index]
			if exists.Existing.Fingerprint() == it.obs.Fingerprint() {
				// A redelivery: its first delivery may have died before
				// publishing, so publish again what it caused (same IDs).
				it.duplicate = true
				it.events = exists.Events
				p.count(MetricDuplicates, 1)
			} else {
				it.replaces = exists.Existing.Fingerprint()
				it.carried = exists.Events[max(0, len(exists.Events)-MaxCarriedEvents):]
				p.count(MetricAmendments, 1)
			}
		case errors.As(err, &gone) && gone.Index < len(pl.writes):
			// The amended observation expired or was deleted: nothing is
			// left to amend, so this is a new observation.
			p.cache.forget(pl.commit)
			consistent = true
			resolutions++
			if resolutions > 2*len(unit)+2 {
				fail(pending, fmt.Errorf("observation conditions keep failing: %w", err))
				break commits
			}
			pl.writes[gone.Index].replaces = ""
		case errors.Is(err, ErrVersionConflict):
			p.cache.forget(pl.commit)
			consistent = true
			conflicts++
			p.count(MetricVersionConflicts, 1)
			if conflicts > p.maxConflicts() {
				fail(pending, fmt.Errorf("gave up after %d version conflicts in a row: %w", conflicts, err))
				break commits
			}
			p.sleep(ctx, conflictDelay(conflicts))
		default:
			// The commit may or may not have been stored.
			p.cache.forget(pl.commit)
			fail(pending, err)
			break commits
		}
	}
	// Earlier commits of this unit may have stored events even if a later
	// one failed: publish them now.
	done := make([]*item, 0, len(unit))
	for _, it := range unit {
		if !it.rerouted {
			done = append(done, it)
		}
	}
	p.publish(ctx, identity, touched, done, errs)
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

// plan is the next atomic write of a unit.
type plan struct {
	consumed int     // items of pending it covers (written or duplicates)
	commit   *Commit //
	writes   []*item // the item behind each commit.Observations entry
}

// errStaleResolution reports that a unit's records were computed under
// another membership than the one its attackers were resolved under.
var errStaleResolution = errors.New("membership changed since the attackers were resolved")

// plan applies pending items, in order, to fresh copies of their records
// until the commit is full or an item needs a committed predecessor.
//
// Every record it writes must have been computed under the membership the
// attackers were resolved under: a membership change rewrites every record
// of the identities it changes with the new membership version, so a record
// under another version means the resolution is stale (errStaleResolution),
// and a stale record fails its version condition at commit. A record it
// creates has no version to compare: the commit then writes the identity
// record, whose membership is checked here and whose version is checked at
// commit.
func (p *Processor) plan(ctx context.Context, identity string, pending []*item, consistent bool) (*plan, error) {
	primitives := make([]string, 0, len(pending))
	for _, it := range pending {
		primitives = append(primitives, it.key.Primitive)
	}
	records, err := p.loadRecords(ctx, identity, primitives, consistent)
	if err != nil {
		return nil, err
	}
	pl := &plan{commit: &Commit{}}
	var ident *IdentityRecord
	inCommit := make(map[SeriesKey]bool)
	written := make(map[SeriesKey]map[string]bool)
	full := make(map[SeriesKey]map[string]Point) // whole series, once read
	planned := make(map[SeriesKey][]storedPoint) // points written by this commit
	var budget commitBudget
	for i, it := range pending {
		if it.duplicate {
			pl.consumed = i + 1
			continue
		}
		key, ref := it.key, it.obs.EvidenceRef
		if written[it.store][ref] {
			break // the same key twice: the second waits for the first
		}
		grow := 1
		if !inCommit[key] {
			grow++
		}
		rec := records[key.Primitive]
		if pl.commit.Items()+grow+1 > MaxCommitItems || !budget.fits(it.obs, it.carried, rec) { // +1: room for the identity
			break
		}
		// Attackers of one identity may have been resolved at different
		// times: each item's membership must be its record's.
		res := it.res
		if rec.Version > 0 && rec.Membership != res.membership {
			return nil, errStaleResolution
		}
		rec.Membership = res.membership
		if rec.Version == 0 {
			if ident == nil {
				if ident, err = p.loadIdentity(ctx, identity, consistent); err != nil {
					return nil, err
				}
			}
			if ident.Parent != "" || ident.Membership != res.membership || !ident.HasMember(identity, it.obs.AttackerUUID) {
				return nil, errStaleResolution
			}
			pl.commit.Identity = ident
		}
		if len(rec.Pending()) >= MaxPendingEvents {
			// The bus has not taken this series' events for a while: hold
			// new observations back (the queue delivers them again) rather
			// than let the outbox grow toward the item size limit.
			it.deferred = &Error{Code: ECONFLICT, Message: fmt.Sprintf("series %s has %d events the bus has not accepted yet; retry later", key, len(rec.Pending()))}
			pl.consumed = i + 1
			continue
		}
		kind := p.Registry.Kind(key.Primitive)
		point := it.obs.Point()
		var state State
		if it.replaces != "" || p.FullRecompute || !rec.Series.Compatible(kind, p.Thresholds) || full[key] != nil {
			points, err := p.wholeSeries(ctx, key, res.members, full, planned[key])
			if err != nil {
				return nil, err
			}
			points[pointKey(it.store, ref)] = point
			all := make([]Point, 0, len(points))
			for _, pt := range points {
				all = append(all, pt)
			}
			rec.Series = NewSeries(kind, all, p.Thresholds)
			if rec.Series.Exact() {
				state = rec.Series.State(p.Thresholds)
			} else {
				SortPoints(all)
				state = Merge(kind, all, p.Thresholds)
			}
		} else {
			rec.Series.Add(point)
			state = rec.Series.State(p.Thresholds)
		}
		planned[key] = append(planned[key], storedPoint{store: it.store, point: point})
		events := slices.Clone(it.carried)
		change := rec.Transition(state, it.obs.AttackerUUID)
		if change != nil {
			e, err := change.Event()
			if err != nil {
				return nil, err
			}
			events = append(events, e)
		}
		if Touches(change) {
			if ident == nil {
				if ident, err = p.loadIdentity(ctx, identity, consistent); err != nil {
					return nil, err
				}
			}
			if s := ident.Flag(change, p.Thresholds); s != nil {
				e, err := s.Event()
				if err != nil {
					return nil, err
				}
				events = append(events, e)
			}
			pl.commit.Identity = ident
		}
		pl.commit.Observations = append(pl.commit.Observations, ObservationWrite{Key: it.store, Observation: it.obs, Replaces: it.replaces, Events: events})
		pl.writes = append(pl.writes, it)
		if !inCommit[key] {
			inCommit[key] = true
			pl.commit.Series = append(pl.commit.Series, rec)
		}
		budget.add(pl.commit.Observations[len(pl.commit.Observations)-1], rec, pl.commit.Identity)
		if written[it.store] == nil {
			written[it.store] = make(map[string]bool)
		}
		written[it.store][ref] = true
		pl.consumed = i + 1
	}
	return pl, nil
}

// storedPoint is a point with the series it is stored under.
type storedPoint struct {
	store SeriesKey
	point Point
}

// pointKey names a point of an identity's series uniquely: the natural key
// within the attacker's stored series.
func pointKey(store SeriesKey, ref string) string { return store.String() + "\x00" + ref }

// wholeSeries returns the points of an identity's series, the union of the
// stored series of its members, by pointKey: read once per plan, with this
// plan's earlier points on top.
func (p *Processor) wholeSeries(ctx context.Context, key SeriesKey, members []string, full map[SeriesKey]map[string]Point, planned []storedPoint) (map[string]Point, error) {
	if points := full[key]; points != nil {
		return points, nil
	}
	union, err := p.loadUnion(ctx, members, []string{key.Primitive})
	if err != nil {
		return nil, err
	}
	points := make(map[string]Point, len(planned))
	for _, o := range union[key.Primitive] {
		points[pointKey(SeriesKey{IdentityUUID: StubIdentityID(o.AttackerUUID), Primitive: key.Primitive}, o.EvidenceRef)] = o.Point()
	}
	for _, sp := range planned {
		points[pointKey(sp.store, sp.point.Ref)] = sp.point
	}
	full[key] = points
	return points, nil
}

// loadRecords returns working copies of the records of primitives: from
// the cache where it has them, else from the store, else new.
func (p *Processor) loadRecords(ctx context.Context, identity string, primitives []string, consistent bool) (map[string]*SeriesRecord, error) {
	out := make(map[string]*SeriesRecord, len(primitives))
	var missing []string
	for _, prim := range primitives {
		if _, done := out[prim]; done {
			continue
		}
		key := SeriesKey{IdentityUUID: identity, Primitive: prim}
		if rec, ok := p.cache.series(key); ok {
			out[prim] = rec
			continue
		}
		out[prim] = nil
		missing = append(missing, prim)
	}
	if len(missing) > 0 {
		stored, err := p.Store.LoadSeries(ctx, identity, missing, consistent)
		if err != nil {
			return nil, fmt.Errorf("load records of identity %s: %w", identity, err)
		}
		for _, prim := range missing {
			key := SeriesKey{IdentityUUID: identity, Primitive: prim}
			rec := stored[prim]
			if rec == nil {
				rec = NewSeriesRecord(key, p.Registry.Kind(prim), p.Thresholds)
			}
			rec.Key = key
			p.cache.putSeries(rec)
			out[prim] = rec.Clone()
		}
	}
	return out, nil
}

func (p *Processor) loadIdentity(ctx context.Context, identity string, consistent bool) (*IdentityRecord, error) {
	if rec, ok := p.cache.identity(identity); ok {
		return rec, nil
	}
	rec, err := p.Store.LoadIdentity(ctx, identity, consistent)
	if err != nil {
		return nil, fmt.Errorf("load identity %s: %w", identity, err)
	}
	rec.IdentityUUID = identity
	p.cache.putIdentity(rec)
	return rec.Clone(), nil
}

// publish sends the events of the unit's stored observations, those found
// stored with redelivered ones, and any left in the outboxes of the touched
// series by a rebuild. Nothing records that the bus took an observation's
// events: a message whose events the bus did not take fails, and its
// redelivery, finding the observation stored, publishes them again with
// the same IDs. Outbox events are acknowledged as the bus takes them.
func (p *Processor) publish(ctx context.Context, identity string, touched []SeriesKey, unit []*item, errs []error) {
	var events []Event
	owners := make(map[string][]*item) // event ID → items whose observation caused it
	outbox := make(map[string]SeriesKey)
	add := func(e Event) bool {
		_, known := owners[e.ID]
		if _, queued := outbox[e.ID]; !known && !queued {
			events = append(events, e)
			return true
		}
		return false
	}
	var primitives []string
	for _, k := range touched {
		primitives = append(primitives, k.Primitive)
	}
	if len(primitives) > 0 {
		records, err := p.loadRecords(ctx, identity, primitives, false)
		if err != nil {
			p.failKeys(unit, errs, nil, err)
			return
		}
		for _, k := range touched {
			for _, e := range records[k.Primitive].Pending() {
				if add(e) {
					outbox[e.ID] = k
				}
			}
		}
	}
	for _, it := range unit {
		for _, e := range it.events {
			add(e)
			owners[e.ID] = append(owners[e.ID], it)
		}
	}
	if len(events) == 0 {
		return
	}
	unsent, err := p.publishEvents(ctx, events) // event IDs to publish again
	for id := range unsent {
		for _, it := range owners[id] {
			if errs[it.index] == nil {
				errs[it.index] = fmt.Errorf("publish events: %w", err)
			}
		}
	}
	p.ackOutboxes(ctx, events, outbox, unsent, unit, errs, err)
}

// ackOutboxes acknowledges, per series, the prefix of its outbox events the
// bus took, and fails the items of series whose outbox still holds some.
func (p *Processor) ackOutboxes(ctx context.Context, events []Event, outbox map[string]SeriesKey, unsent map[string]bool, unit []*item, errs []error, publishErr error) {
	blocked := make(map[SeriesKey]bool)
	acked := make(map[SeriesKey]int64)
	var order []SeriesKey
	for _, e := range events {
		k, ok := outbox[e.ID]
		if !ok || blocked[k] {
			continue
		}
		if unsent[e.ID] {
			blocked[k] = true
			continue
		}
		if _, seen := acked[k]; !seen {
			order = append(order, k)
		}
		acked[k] = e.Position
	}
	// The acks are independent writes: send them together, so the batch
	// waits for one round trip rather than one per series.
	var wg sync.WaitGroup
	for _, k := range order {
		pos := acked[k]
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
	if len(blocked) > 0 {
		p.failKeys(unit, errs, blocked, fmt.Errorf("publish events: %w", publishErr))
	}
}

// failKeys fails the items of the given series (all items when keys is nil)
// that have no error yet.
func (p *Processor) failKeys(unit []*item, errs []error, keys map[SeriesKey]bool, err error) {
	for _, it := range unit {
		if errs[it.index] == nil && (keys == nil || keys[it.key]) {
			errs[it.index] = err
		}
	}
}

// countCaused counts the events a committed observation caused; counted
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

// publishEvents sends events to the bus and returns the IDs of those to
// publish again, with the bus's error; an event the bus rejects for good is
// logged and dropped.
func (p *Processor) publishEvents(ctx context.Context, events []Event) (map[string]bool, error) {
	err := p.Publisher.Publish(ctx, events)
	unsent := make(map[string]bool)
	var perr *PublishError
	switch {
	case err == nil:
	case errors.As(err, &perr):
		for _, f := range perr.Failed {
			p.count(MetricPublishFailures, 1)
			if f.Retryable {
				unsent[f.Event.ID] = true
				continue
			}
			p.logger().ErrorContext(ctx, "event rejected permanently by the bus; dropping it",
				"event_id", f.Event.ID, "detail_type", f.Event.DetailType, "code", f.Code, "reason", f.Message)
		}
	default:
		p.count(MetricPublishFailures, len(events))
		for _, e := range events {
			unsent[e.ID] = true
		}
	}
	return unsent, err
}
