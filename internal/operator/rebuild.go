package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/backoff"
	"decnet-attribution/internal/ddbstore"
)

// Defaults of Rebuilder.
const (
	DefaultSegments     = 4
	MaxSegments         = 64
	DefaultMaxConflicts = 8
)

// SeriesScanner finds the stored series for the Rebuilder besides the
// Store: pages of a segment of the observations table, and the primitives
// an identity has records of. *ddbstore.Store satisfies it.
type SeriesScanner interface {
	ScanObservations(ctx context.Context, segment, segments int, from ddbstore.ScanCursor, limit int32) (ddbstore.ObservationPage, error)
	ListPrimitives(ctx context.Context, identity string) ([]string, error)
}

var _ SeriesScanner = (*ddbstore.Store)(nil)

// Rebuilder recomputes every series record from its stored observations,
// as after a change of thresholds or of the primitive registry.
//
// A parallel scan of the observations table (Segments segments, reading
// the series key and the attacker) discovers the stored series, which are
// the attackers' stub series. Each is resolved to the canonical identity
// its attacker belongs to (its literal identity, then merges followed),
// and the first series found of a canonical identity starts the rebuild
// of all that identity's series (those with a record, as listed, and the
// one found): each is rebuilt from the union of the stored observations
// of every member of the identity (each member's stub series, read
// consistently by Store.LoadObservations), with
// attribution.SeriesRecord.Rebuild. Identities that are no longer
// canonical (merged, or left without attackers) keep their frozen records:
// their observations count in the canonical identity's series. Then
// the identity record is reconciled with all their states at once
// (attribution.IdentityRecord.ReconcileAll), so the multi_actor_suspected
// rule sees the rebuilt identity, not a half-rebuilt one. The records and
// the identity record are written by version-conditioned Store.Commit
// calls (one, unless the identity has more series than a transaction
// holds), so a rebuild racing the function never loses an update: on a
// version conflict the identity is read and rebuilt again. A record that
// comes out identical is not written.
//
// A state word that changes is a transition, with its state_changed event
// (and a multi_actor_suspected event when the identity's flagged set
// changes). With a Publisher, those events are published after the commit
// and acknowledged as the function does; together with any event the
// series' outbox still held. Without one, the rebuild's own events are
// taken out of the outbox before the commit, so that nothing publishes
// them later; the sequence numbers still count them.
//
// Memory: the set of series done (one string per series) is held, and
// saved in the checkpoint; observations are held one series at a time per
// segment, records one identity at a time per segment.
type Rebuilder struct {
	Scanner SeriesScanner
	// ObservationsTable and StatesTable name the tables in messages (and
	// the checkpoint).
	ObservationsTable string
	StatesTable       string
	Store             attribution.Store
	// Identities resolves attackers to their literal identities; nil
	// means Store, if it does.
	Identities attribution.Identities
	// Publisher, when set, publishes the transitions (emit) to EventBus.
	Publisher  attribution.Publisher
	EventBus   string // for error messages
	Registry   attribution.Registry
	Thresholds attribution.Thresholds
	// Segments is the number of parallel scan segments (and workers).
	// Zero means DefaultSegments.
	Segments int
	// DryRun computes and reports the changes and writes nothing: no
	// record, no event, no checkpoint.
	DryRun bool
	// Checkpoint is the path of the checkpoint file; empty for none. An
	// existing file is resumed; a complete rebuild removes it.
	Checkpoint string
	// PageSize limits the items of one scan page; 0 lets DynamoDB fill
	// pages of up to 1 MB.
	PageSize int32
	// MaxConflicts bounds the version conflicts tolerated per identity.
	// Zero means DefaultMaxConflicts.
	MaxConflicts int
	// OnChange, when set, is called (one call at a time) for every series
	// whose state changes, or would in a dry run.
	OnChange func(Change)
	// OnProgress, when set, is called after every page and identity.
	OnProgress func(RebuildProgress)
	// Sleep waits between conflict retries; nil means a timer.
	Sleep func(context.Context, time.Duration) error
}

// Change is a series whose state the rebuild changes.
type Change struct {
	Key attribution.SeriesKey
	// Old is the state before, nil if the series had no record.
	Old *attribution.State
	New attribution.State
	// Transition is set when the state word changes.
	Transition bool
}

// String renders the change as "identity|primitive: old → new, count a → b".
func (c Change) String() string {
	oldWord, oldCount := "(none)", 0
	if c.Old != nil {
		oldWord, oldCount = c.Old.State, c.Old.ObservationCount
	}
	return fmt.Sprintf("%s: %s → %s, count %d → %d", c.Key, oldWord, c.New.State, oldCount, c.New.ObservationCount)
}

// RebuildProgress is where a rebuild stands.
type RebuildProgress struct {
	Scanned int64 // observation items scanned by this run
	Series  int   // series rebuilt (examined, in a dry run) by this run
	Changed int
	Failed  int
}

// RebuildResult is what a rebuild did.
type RebuildResult struct {
	RebuildProgress
	// Resumed is set when an earlier run's checkpoint was continued;
	// AlreadyDone counts the series it had finished.
	Resumed     bool
	AlreadyDone int
	Transitions int
	Suspicions  int
	// Published counts the events the bus accepted.
	Published int
	// Failures are the series that could not be rebuilt; the others were.
	Failures []SeriesFailure
}

// SeriesFailure is a series that could not be rebuilt.
type SeriesFailure struct {
	Key attribution.SeriesKey
	Err error
}

func (f SeriesFailure) String() string { return fmt.Sprintf("%s: %v", f.Key, f.Err) }

// Run rebuilds every series. It returns an error when the rebuild had to
// stop (the context ended, a table is missing, a scan failed); the
// checkpoint then holds what was done. Series that failed alone (stored
// values that no longer fit the kind, too many conflicts, events the bus
// refused) are listed in the result and the rebuild goes on; the
// checkpoint is then kept so that a rerun tries them again.
func (r *Rebuilder) Run(ctx context.Context) (RebuildResult, error) {
	var res RebuildResult
	segments := r.Segments
	if segments == 0 {
		segments = DefaultSegments
	}
	if segments < 1 || segments > MaxSegments {
		return res, fmt.Errorf("segments: want 1 to %d, got %d", MaxSegments, segments)
	}
	path := r.Checkpoint
	if r.DryRun {
		path = ""
	}
	cp, resumed, err := openCheckpoint(path, r.ObservationsTable, segments, settingsFingerprint(r.Thresholds, r.Registry))
	if err != nil {
		return res, err
	}
	res.Resumed, res.AlreadyDone = resumed, cp.doneCount()

	run := &rebuildRun{r: r, cp: cp, res: &res, identities: r.Identities, canonical: map[string]string{}}
	if run.identities == nil {
		run.identities, _ = r.Store.(attribution.Identities)
	}
	if run.identities == nil {
		return res, errors.New("rebuild: no identities to resolve attackers with")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Series that failed in an earlier run first, by identity.
	retry := map[string][]string{}
	var order []string
	for _, s := range cp.failures() {
		if key, ok := parseSeries(s); ok {
			if _, seen := retry[key.IdentityUUID]; !seen {
				order = append(order, key.IdentityUUID)
			}
			retry[key.IdentityUUID] = append(retry[key.IdentityUUID], key.Primitive)
		}
	}
	for _, id := range order {
		// Failures are kept by canonical series: retried as they are.
		if err := run.rebuild(ctx, id, retry[id], ""); err != nil {
			return run.finish(errors.Join(err, cp.save()))
		}
	}
	var wg sync.WaitGroup
	for seg := range segments {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run.segment(ctx, seg, segments); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return run.finish(errors.Join(err, cp.save()))
	}
	if len(res.Failures) > 0 {
		return run.finish(cp.save())
	}
	return run.finish(cp.remove())
}

// rebuildRun is the shared state of one Run.
type rebuildRun struct {
	r       *Rebuilder
	cp      *checkpoint
	mu      sync.Mutex // guards res and the callbacks
	res     *RebuildResult
	scanned atomic.Int64

	identities attribution.Identities
	resolvedMu sync.Mutex        // guards canonical
	canonical  map[string]string // attacker → canonical identity, as first resolved
}

func (run *rebuildRun) finish(err error) (RebuildResult, error) {
	run.mu.Lock()
	defer run.mu.Unlock()
	run.res.Scanned = run.scanned.Load()
	return *run.res, err
}

// segment scans one segment from its checkpoint and rebuilds the
// identities of the series it finds.
func (run *rebuildRun) segment(ctx context.Context, seg, total int) error {
	cursor, finished := run.cp.segment(seg)
	if finished {
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		page, err := run.r.Scanner.ScanObservations(ctx, seg, total, cursor, run.r.PageSize)
		if err != nil {
			return missing(err, "table", run.r.ObservationsTable)
		}
		run.scanned.Add(page.Scanned)
		for _, found := range page.Series {
			if run.cp.seen(found.Series) {
				continue
			}
			key, ok := parseSeries(found.Series)
			if !ok {
				if run.cp.claim(found.Series) {
					run.fail(attribution.SeriesKey{IdentityUUID: found.Series}, fmt.Errorf("series key %q is not identity|primitive", found.Series))
				}
				continue
			}
			if err := run.identity(ctx, key, found.Attacker); err != nil {
				return err
			}
		}
		run.progress()
		if !run.r.DryRun {
			if err := run.cp.advance(seg, page.Next); err != nil {
				return err
			}
		}
		if len(page.Next) == 0 {
			return nil
		}
		cursor = page.Next
	}
}

// identity rebuilds, for a stored stub series of attacker, the series of
// the canonical identity the attacker resolves to.
func (run *rebuildRun) identity(ctx context.Context, stored attribution.SeriesKey, attacker string) error {
	if attacker == "" || stored.IdentityUUID != attribution.StubIdentityID(attacker) {
		run.fail(stored, fmt.Errorf("stored series %s: its observations do not name the attacker whose stub it is", stored))
		return nil
	}
	canonical, err := run.resolve(ctx, attacker)
	if err != nil {
		return err
	}
	return run.rebuild(ctx, canonical, []string{stored.Primitive}, attacker)
}

// resolve returns the canonical identity of attacker: its literal
// identity, then merges followed. A membership change racing the rebuild
// is harmless: the rebuild of an identity reads its record again, skips it
// if it was retired, and the change recomputes what it touches.
func (run *rebuildRun) resolve(ctx context.Context, attacker string) (string, error) {
	run.resolvedMu.Lock()
	c, ok := run.canonical[attacker]
	run.resolvedMu.Unlock()
	if ok {
		return c, nil
	}
	rec, err := run.identities.LoadAttacker(ctx, attacker)
	if err != nil {
		return "", fmt.Errorf("resolve attacker %s: %w", attacker, missing(err, "table", "identities"))
	}
	id := rec.IdentityUUID
	if id == "" {
		id = attribution.StubIdentityID(attacker)
	}
	for hops := 0; ; hops++ {
		if hops > attribution.MaxMergeChain {
			return "", fmt.Errorf("resolve attacker %s: more than %d merges from %s", attacker, attribution.MaxMergeChain, rec.IdentityUUID)
		}
		node, err := run.r.Store.LoadIdentity(ctx, id, true)
		if err != nil {
			return "", fmt.Errorf("read identity record %s: %w", id, missing(err, "table", run.r.StatesTable))
		}
		if node.Parent == "" {
			break
		}
		id = node.Parent
	}
	run.resolvedMu.Lock()
	run.canonical[attacker] = id
	run.resolvedMu.Unlock()
	return id, nil
}

// rebuild rebuilds the series of a canonical identity that nobody has
// taken up yet: the given ones and those with a record. hint is an
// attacker of it, if known (a stub's record lists none). It returns an
// error only when the whole rebuild must stop.
func (run *rebuildRun) rebuild(ctx context.Context, id string, seeds []string, hint string) error {
	listed, err := run.r.Scanner.ListPrimitives(ctx, id)
	if err != nil {
		return fmt.Errorf("list states of identity %s: %w", id, missing(err, "table", run.r.StatesTable))
	}
	all := mergeSorted(listed, seeds)
	var mine []string
	for _, p := range all {
		if run.cp.claim(attribution.SeriesKey{IdentityUUID: id, Primitive: p}.String()) {
			mine = append(mine, p)
		}
	}
	if len(mine) == 0 {
		return nil
	}
	out, err := run.r.rebuildIdentity(ctx, id, mine, all, hint)
	if err != nil && fatal(err) {
		for _, p := range mine {
			run.cp.release(attribution.SeriesKey{IdentityUUID: id, Primitive: p}.String())
		}
		return err
	}
	run.mu.Lock()
	for _, p := range mine {
		key := attribution.SeriesKey{IdentityUUID: id, Primitive: p}
		ferr := out.failures[p]
		if ferr == nil && err != nil {
			ferr = err // the whole identity failed
		}
		if ferr != nil {
			run.res.Failed++
			run.res.Failures = append(run.res.Failures, SeriesFailure{Key: key, Err: ferr})
		}
		if out.examined[p] {
			run.res.Series++
		}
	}
	for _, c := range out.changes {
		run.res.Changed++
		if c.Transition {
			run.res.Transitions++
		}
		if run.r.OnChange != nil {
			run.r.OnChange(c)
		}
	}
	if out.suspicion {
		run.res.Suspicions++
	}
	run.res.Published += out.published
	run.mu.Unlock()
	run.progress()
	var errs []error
	for _, p := range mine {
		ok := out.failures[p] == nil && err == nil
		errs = append(errs, run.cp.finish(attribution.SeriesKey{IdentityUUID: id, Primitive: p}.String(), ok))
	}
	return errors.Join(errs...)
}

func (run *rebuildRun) fail(key attribution.SeriesKey, err error) {
	run.mu.Lock()
	defer run.mu.Unlock()
	run.res.Failed++
	run.res.Failures = append(run.res.Failures, SeriesFailure{Key: key, Err: err})
}

func (run *rebuildRun) progress() {
	if run.r.OnProgress == nil {
		return
	}
	run.mu.Lock()
	p := run.res.RebuildProgress
	p.Scanned = run.scanned.Load()
	run.mu.Unlock()
	run.r.OnProgress(p)
}

// identityOutcome is what rebuilding one identity did.
type identityOutcome struct {
	examined  map[string]bool  // primitives rebuilt (or examined, dry)
	failures  map[string]error // primitives that could not be rebuilt
	changes   []Change
	suspicion bool
	published int
}

// seriesError marks an error that concerns some series only.
type seriesError struct{ err error }

func (e *seriesError) Error() string { return e.err.Error() }
func (e *seriesError) Unwrap() error { return e.err }

// fatal reports whether an error must stop the whole rebuild.
func fatal(err error) bool {
	var s *seriesError
	return !errors.As(err, &s)
}

// rebuildIdentity rebuilds the series mine of a canonical identity (all
// lists every series of it) from the union of its members' stored
// observations, reconciles the identity record with all their states,
// commits and, with a Publisher, publishes. An identity that is no longer
// canonical is left alone. An error that is a *seriesError concerns all
// of mine; other errors stop the rebuild.
func (r *Rebuilder) rebuildIdentity(ctx context.Context, id string, mine, all []string, hint string) (identityOutcome, error) {
	maxConflicts := r.MaxConflicts
	if maxConflicts <= 0 {
		maxConflicts = DefaultMaxConflicts
	}
	for conflicts := 0; ; conflicts++ {
		out := identityOutcome{examined: map[string]bool{}, failures: map[string]error{}}
		// The identity record first: if another writer changes a record
		// read below, the flags it writes make this commit conflict.
		ident, err := r.Store.LoadIdentity(ctx, id, true)
		if err != nil {
			return out, fmt.Errorf("read identity record %s: %w", id, missing(err, "table", r.StatesTable))
		}
		ident.IdentityUUID = id
		if ident.Parent != "" || ident.Membered && len(ident.Members) == 0 {
			return out, nil // retired meanwhile: its records stay frozen
		}
		recs, err := r.Store.LoadSeries(ctx, id, all, true)
		if err != nil {
			return out, fmt.Errorf("read records of identity %s: %w", id, missing(err, "table", r.StatesTable))
		}
		if hint == "" {
			for _, rec := range recs {
				hint = rec.AttackerUUID
			}
		}
		for p, rec := range recs {
			if rec.Orphaned(ident.Membership) {
				// It holds nothing applied: rebuilt, it is written over.
				rec.Key = attribution.SeriesKey{IdentityUUID: id, Primitive: p}
				recs[p] = rec.Replacement(r.Registry.Kind(p), r.Thresholds)
				recs[p].Complete = false
			}
		}
		members := ident.EffectiveMembers(id, hint)
		before := map[string]string{}
		lastPosition := map[string]int64{}
		for p, rec := range recs {
			rec.Key = attribution.SeriesKey{IdentityUUID: id, Primitive: p}
			b, err := json.Marshal(rec)
			if err != nil {
				return out, fmt.Errorf("encode record %s: %w", rec.Key, err)
			}
			before[p], lastPosition[p] = string(b), rec.NextPosition
		}
		for _, p := range mine {
			key := attribution.SeriesKey{IdentityUUID: id, Primitive: p}
			kind := r.Registry.Kind(p)
			var observations []attribution.Observation
			for _, m := range members {
				stub := attribution.SeriesKey{IdentityUUID: attribution.StubIdentityID(m), Primitive: p}
				obs, err := r.Store.LoadObservations(ctx, stub)
				if err != nil {
					return out, fmt.Errorf("read observations of %s (attacker %s of %s): %w", stub, m, id, missing(err, "table", r.ObservationsTable))
				}
				observations = append(observations, obs...)
			}
			rec := recs[p]
			if rec == nil {
				rec = attribution.NewSeriesRecord(key, kind, r.Thresholds)
				rec.Complete = false // its observations are items
			}
			observations = rec.Observations(observations)
			if len(observations) == 0 {
				continue // none left (expired): the record stays as it is
			}
			var old *attribution.State
			if rec.Current != nil {
				o := *rec.Current
				old = &o
			}
			ev, err := rec.Rebuild(kind, observations, r.Thresholds)
			if err != nil {
				out.failures[p] = fmt.Errorf("rebuild: %w", err)
				continue
			}
			recs[p] = rec
			out.examined[p] = true
			if changed(old, rec.Current) {
				out.changes = append(out.changes, Change{Key: key, Old: old, New: *rec.Current, Transition: ev != nil})
			}
		}
		if r.DryRun {
			return out, nil
		}
		list := make([]*attribution.SeriesRecord, 0, len(recs))
		for _, p := range all {
			if rec := recs[p]; rec != nil {
				list = append(list, rec)
			}
		}
		suspicion, carrier, identChanged := ident.ReconcileAll(list, r.Thresholds)
		if suspicion != nil {
			if err := carrier.Enqueue(suspicion); err != nil {
				return out, err
			}
			out.suspicion = true
		}
		var touched []*attribution.SeriesRecord
		for _, rec := range list {
			if r.Publisher == nil {
				// Nothing is to publish what this rebuild queued.
				kept := rec.Outbox[:0]
				for _, e := range rec.Outbox {
					if e.Position <= lastPosition[rec.Key.Primitive] {
						kept = append(kept, e)
					}
				}
				rec.Outbox = kept
			}
			b, err := json.Marshal(rec)
			if err != nil {
				return out, fmt.Errorf("encode record %s: %w", rec.Key, err)
			}
			if string(b) != before[rec.Key.Primitive] {
				touched = append(touched, rec)
			}
		}
		err = r.commit(ctx, touched, ident, identChanged)
		if errors.Is(err, attribution.ErrVersionConflict) {
			if conflicts >= maxConflicts {
				return out, &seriesError{fmt.Errorf("gave up after %d version conflicts: %w", conflicts+1, err)}
			}
			if err := r.sleep(ctx, conflictBackoff(conflicts+1)); err != nil {
				return out, err
			}
			continue
		}
		if err != nil {
			return out, err
		}
		if r.Publisher != nil {
			for _, rec := range list {
				n, err := r.publish(ctx, rec)
				out.published += n
				if err != nil && fatal(err) {
					return out, err
				}
				if err != nil {
					out.failures[rec.Key.Primitive] = err
				}
			}
		}
		return out, nil
	}
}

// commit writes the touched records and, if it changed, the identity
// record: in one transaction when they fit, else in several with the
// identity record in the last.
func (r *Rebuilder) commit(ctx context.Context, touched []*attribution.SeriesRecord, ident *attribution.IdentityRecord, identChanged bool) error {
	for len(touched) > 0 || identChanged {
		c := &attribution.Commit{}
		n := min(len(touched), attribution.MaxCommitItems-1)
		c.Series, touched = touched[:n], touched[n:]
		if len(touched) == 0 && identChanged {
			c.Identity = ident
			identChanged = false
		}
		if err := r.Store.Commit(ctx, c); err != nil {
			if errors.Is(err, attribution.ErrVersionConflict) {
				return err
			}
			return fmt.Errorf("write records of identity %s: %w", ident.IdentityUUID, missing(err, "table", r.StatesTable))
		}
		for _, rec := range c.Series {
			rec.Version++
		}
		if c.Identity != nil {
			c.Identity.Version++
		}
	}
	return nil
}

// mergeSorted returns the sorted union of a sorted list and more.
func mergeSorted(sorted, more []string) []string {
	out := slices.Clone(sorted)
	for _, s := range more {
		if i, found := slices.BinarySearch(out, s); !found {
			out = slices.Insert(out, i, s)
		}
	}
	return out
}

// publish sends a record's pending events and acknowledges the prefix the
// bus accepted.
func (r *Rebuilder) publish(ctx context.Context, rec *attribution.SeriesRecord) (int, error) {
	events := rec.Pending()
	if len(events) == 0 {
		return 0, nil
	}
	owner := make(map[string]attribution.SeriesKey, len(events))
	for _, e := range events {
		owner[e.ID] = rec.Key
	}
	// The function's publish path: acknowledge up to the first event to
	// publish again; an event refused for good is dropped from the outbox.
	d, err := attribution.Courier{Publisher: r.Publisher}.Deliver(ctx, events, owner)
	var perr *attribution.PublishError
	if err != nil && !errors.As(err, &perr) {
		return 0, fmt.Errorf("publish events of %s: %w", rec.Key, missing(err, "event bus", r.EventBus))
	}
	if acked := d.Acked[rec.Key]; acked > 0 {
		if err := r.Store.Ack(ctx, rec.Key, acked); err != nil {
			return d.Taken, fmt.Errorf("acknowledge events of %s: %w", rec.Key, missing(err, "table", r.StatesTable))
		}
	}
	if perr != nil {
		return d.Taken, &seriesError{fmt.Errorf("publish: %w (those to retry stay in the outbox)", perr)}
	}
	return d.Taken, nil
}

// changed reports whether a state differs in what an operator reads:
// word, value, confidence or count.
func changed(old, next *attribution.State) bool {
	if old == nil || next == nil {
		return old != next
	}
	return old.State != next.State || old.CurrentValue != next.CurrentValue ||
		old.Confidence != next.Confidence || old.ObservationCount != next.ObservationCount
}

func conflictBackoff(attempt int) time.Duration {
	return backoff.Jitter(attempt+1, 20*time.Millisecond, time.Second)
}

func (r *Rebuilder) sleep(ctx context.Context, d time.Duration) error {
	if r.Sleep != nil {
		return r.Sleep(ctx, d)
	}
	return backoff.Sleep(ctx, d)
}

// parseSeries splits "identity|primitive" (primitives cannot hold '|').
func parseSeries(s string) (attribution.SeriesKey, bool) {
	i := strings.LastIndexByte(s, '|')
	if i <= 0 || i == len(s)-1 {
		return attribution.SeriesKey{}, false
	}
	return attribution.SeriesKey{IdentityUUID: s[:i], Primitive: s[i+1:]}, true
}
