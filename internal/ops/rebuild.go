package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"decnet-attribution/internal/attribution"
)

// Defaults of Rebuilder.
const (
	DefaultSegments     = 4
	MaxSegments         = 64
	DefaultMaxConflicts = 8
)

// ScanAPI is the part of the DynamoDB client the Rebuilder scans with;
// *dynamodb.Client satisfies it.
type ScanAPI interface {
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

var _ ScanAPI = (*dynamodb.Client)(nil)

// Rebuilder recomputes every series record from its stored observations,
// as after a change of thresholds or of the primitive registry.
//
// A parallel Scan of the observations table (Segments segments, reading
// only the series key) discovers the series. Each series is then rebuilt
// from all its observations, read with a consistent Query
// (Store.LoadObservations), with attribution.SeriesRecord.Rebuild, and the
// identity record is reconciled with the new state
// (attribution.IdentityRecord.Reconcile). Record and identity record are
// written together by one version-conditioned Store.Commit, so a rebuild
// racing the function never loses an update: on a version conflict the
// series is read and rebuilt again. A record that comes out identical is
// not written.
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
// saved in the checkpoint; observations are held one series per segment
// at a time.
type Rebuilder struct {
	Scanner           ScanAPI
	ObservationsTable string
	StatesTable       string // for error messages
	Store             attribution.Store
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
	// PageSize limits the items of one Scan page; 0 lets DynamoDB fill
	// pages of up to 1 MB.
	PageSize int32
	// MaxConflicts bounds the version conflicts tolerated per series.
	// Zero means DefaultMaxConflicts.
	MaxConflicts int
	// OnChange, when set, is called (one call at a time) for every series
	// whose state changes, or would in a dry run.
	OnChange func(Change)
	// OnProgress, when set, is called after every page and series.
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

	run := &rebuildRun{r: r, cp: cp, res: &res}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	for _, s := range cp.failures() {
		key, ok := parseSeries(s)
		if !ok || !cp.claim(s) {
			continue
		}
		if err := run.series(ctx, key); err != nil {
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
}

func (run *rebuildRun) finish(err error) (RebuildResult, error) {
	run.mu.Lock()
	defer run.mu.Unlock()
	run.res.Scanned = run.scanned.Load()
	return *run.res, err
}

// segment scans one segment from its checkpoint and rebuilds the series it
// finds.
func (run *rebuildRun) segment(ctx context.Context, seg, total int) error {
	start, finished := run.cp.segment(seg)
	if finished {
		return nil
	}
	in := &dynamodb.ScanInput{
		TableName:                aws.String(run.r.ObservationsTable),
		Segment:                  aws.Int32(int32(seg)),
		TotalSegments:            aws.Int32(int32(total)),
		ProjectionExpression:     aws.String("#s"),
		ExpressionAttributeNames: map[string]string{"#s": attrSeries},
		ExclusiveStartKey:        start,
	}
	if run.r.PageSize > 0 {
		in.Limit = aws.Int32(run.r.PageSize)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		page, err := run.r.Scanner.Scan(ctx, in)
		if err != nil {
			return fmt.Errorf("scan segment %d of %s: %w", seg, run.r.ObservationsTable, missing(err, "table", run.r.ObservationsTable))
		}
		run.scanned.Add(int64(page.ScannedCount))
		for _, item := range page.Items {
			s, _ := item[attrSeries].(*ddbtypes.AttributeValueMemberS)
			if s == nil {
				continue
			}
			key, ok := parseSeries(s.Value)
			if !ok {
				run.fail(attribution.SeriesKey{IdentityUUID: s.Value}, fmt.Errorf("series key %q is not identity|primitive", s.Value))
				continue
			}
			if !run.cp.claim(s.Value) {
				continue
			}
			if err := run.series(ctx, key); err != nil {
				return err
			}
		}
		run.progress()
		if !run.r.DryRun {
			if err := run.cp.advance(seg, page.LastEvaluatedKey); err != nil {
				return err
			}
		}
		if len(page.LastEvaluatedKey) == 0 {
			return nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// series rebuilds one claimed series. It returns an error only when the
// whole rebuild must stop; a failure of the series alone is recorded.
func (run *rebuildRun) series(ctx context.Context, key attribution.SeriesKey) error {
	outcome, err := run.r.rebuild(ctx, key)
	if err != nil && fatal(err) {
		run.cp.release(key.String())
		return err
	}
	run.mu.Lock()
	if err != nil {
		run.res.Failed++
		run.res.Failures = append(run.res.Failures, SeriesFailure{Key: key, Err: err})
	}
	if outcome.examined {
		run.res.Series++
	}
	if outcome.change != nil {
		run.res.Changed++
		if outcome.change.Transition {
			run.res.Transitions++
		}
		if run.r.OnChange != nil {
			run.r.OnChange(*outcome.change)
		}
	}
	if outcome.suspicion {
		run.res.Suspicions++
	}
	run.res.Published += outcome.published
	run.mu.Unlock()
	run.progress()
	if run.r.DryRun {
		return nil
	}
	return run.cp.finish(key.String(), err == nil)
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

// seriesOutcome is what rebuilding one series did.
type seriesOutcome struct {
	examined  bool
	change    *Change
	suspicion bool
	published int
}

// seriesError marks an error that concerns one series only.
type seriesError struct{ err error }

func (e *seriesError) Error() string { return e.err.Error() }
func (e *seriesError) Unwrap() error { return e.err }

// fatal reports whether an error must stop the whole rebuild.
func fatal(err error) bool {
	var s *seriesError
	return !errors.As(err, &s)
}

// rebuild rebuilds, commits and (with a Publisher) publishes one series.
func (r *Rebuilder) rebuild(ctx context.Context, key attribution.SeriesKey) (seriesOutcome, error) {
	var out seriesOutcome
	kind := r.Registry.Kind(key.Primitive)
	maxConflicts := r.MaxConflicts
	if maxConflicts <= 0 {
		maxConflicts = DefaultMaxConflicts
	}
	for conflicts := 0; ; conflicts++ {
		recs, err := r.Store.LoadSeries(ctx, key.IdentityUUID, []string{key.Primitive}, true)
		if err != nil {
			return out, fmt.Errorf("read record %s: %w", key, missing(err, "table", r.StatesTable))
		}
		rec := recs[key.Primitive]
		if rec == nil {
			rec = attribution.NewSeriesRecord(key, kind, r.Thresholds)
		}
		rec.Key = key
		observations, err := r.Store.LoadObservations(ctx, key)
		if err != nil {
			return out, fmt.Errorf("read observations of %s: %w", key, missing(err, "table", r.ObservationsTable))
		}
		if len(observations) == 0 {
			return out, nil // expired since the scan saw it
		}
		out.examined = true
		before, err := json.Marshal(rec)
		if err != nil {
			return out, fmt.Errorf("encode record %s: %w", key, err)
		}
		var old *attribution.State
		if rec.Current != nil {
			o := *rec.Current
			old = &o
		}
		lastPosition := rec.NextPosition
		ev, err := rec.Rebuild(kind, observations, r.Thresholds)
		if err != nil {
			return out, &seriesError{fmt.Errorf("rebuild: %w", err)}
		}
		if changed(old, rec.Current) {
			out.change = &Change{Key: key, Old: old, New: *rec.Current, Transition: ev != nil}
		}
		if r.DryRun {
			return out, nil
		}
		ident, err := r.Store.LoadIdentity(ctx, key.IdentityUUID, true)
		if err != nil {
			return out, fmt.Errorf("read identity record %s: %w", key.IdentityUUID, missing(err, "table", r.StatesTable))
		}
		ident.IdentityUUID = key.IdentityUUID
		suspicion, identChanged := ident.Reconcile(rec, r.Thresholds)
		if suspicion != nil {
			if err := rec.Enqueue(suspicion); err != nil {
				return out, err
			}
		}
		if r.Publisher == nil {
			kept := rec.Outbox[:0]
			for _, e := range rec.Outbox {
				if e.Position <= lastPosition {
					kept = append(kept, e)
				}
			}
			rec.Outbox = kept
		}
		after, err := json.Marshal(rec)
		if err != nil {
			return out, fmt.Errorf("encode record %s: %w", key, err)
		}
		if string(before) != string(after) || identChanged {
			c := &attribution.Commit{Series: []*attribution.SeriesRecord{rec}}
			if identChanged {
				c.Identity = ident
			}
			err := r.Store.Commit(ctx, c)
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
				return out, fmt.Errorf("write record %s: %w", key, missing(err, "table", r.StatesTable))
			}
			rec.Version++
		}
		out.suspicion = suspicion != nil
		if r.Publisher != nil {
			n, err := r.publish(ctx, rec)
			out.published = n
			if err != nil {
				return out, err
			}
		}
		return out, nil
	}
}

// publish sends a record's pending events and acknowledges the prefix the
// bus accepted, as the function does.
func (r *Rebuilder) publish(ctx context.Context, rec *attribution.SeriesRecord) (int, error) {
	events := rec.Pending()
	if len(events) == 0 {
		return 0, nil
	}
	err := r.Publisher.Publish(ctx, events)
	var perr *attribution.PublishError
	if err != nil && !errors.As(err, &perr) {
		return 0, fmt.Errorf("publish events of %s: %w", rec.Key, missing(err, "event bus", r.EventBus))
	}
	// As the function does: acknowledge up to the first event to publish
	// again; an event refused for good is dropped from the outbox.
	failed := make(map[string]attribution.FailedEvent)
	if perr != nil {
		for _, f := range perr.Failed {
			failed[f.Event.ID] = f
		}
	}
	accepted, acked := 0, int64(0)
	for _, e := range events {
		if f, ok := failed[e.ID]; ok && f.Retryable {
			break
		} else if !ok {
			accepted++
		}
		acked = e.Position
	}
	if acked > 0 {
		if err := r.Store.Ack(ctx, rec.Key, acked); err != nil {
			return accepted, fmt.Errorf("acknowledge events of %s: %w", rec.Key, missing(err, "table", r.StatesTable))
		}
	}
	if perr != nil {
		return accepted, &seriesError{fmt.Errorf("publish: %w (they stay in the outbox)", perr)}
	}
	return accepted, nil
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
	ceiling := min(time.Second, (20*time.Millisecond)<<min(attempt, 10))
	return time.Duration(rand.Int64N(int64(ceiling)) + 1)
}

func (r *Rebuilder) sleep(ctx context.Context, d time.Duration) error {
	if r.Sleep != nil {
		return r.Sleep(ctx, d)
	}
	return sleepContext(ctx, d)
}

// parseSeries splits "identity|primitive" (primitives cannot hold '|').
func parseSeries(s string) (attribution.SeriesKey, bool) {
	i := strings.LastIndexByte(s, '|')
	if i <= 0 || i == len(s)-1 {
		return attribution.SeriesKey{}, false
	}
	return attribution.SeriesKey{IdentityUUID: s[:i], Primitive: s[i+1:]}, true
}
