package attribution

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Rebuild recomputes the record from the whole series, as after a change of
// thresholds or of the primitive's kind: the incremental record is built
// anew from every observation, and the new state is settled like any other
// (a new state word is a transition, with its state_changed event in the
// outbox; the same word only refreshes value, confidence and count).
//
// observations must be the whole stored series. Each is checked against
// kind first: a registry change can make stored values invalid (a string
// under a primitive now numeric), and then the record is left unchanged and
// the error names the observation. An empty series leaves the record
// unchanged and returns nil.
//
// The record keeps its attacker; a record that has none takes the attacker
// of the series' last observation.
func (r *SeriesRecord) Rebuild(kind Kind, observations []Observation, t Thresholds) (*StateChanged, error) {
	if len(observations) == 0 {
		return nil, nil
	}
	points := make([]Point, len(observations))
	last := 0
	for i, o := range observations {
		if err := o.Validate(kind); err != nil {
			return nil, fmt.Errorf("stored observation %s: %w", o.EvidenceRef, err)
		}
		points[i] = o.Point()
		if points[last].Before(points[i]) {
			last = i
		}
	}
	series, state := WholeSeries(kind, points, t)
	attacker := r.AttackerUUID
	if attacker == "" {
		attacker = observations[last].AttackerUUID
	}
	r.Series = series
	return r.Settle(state, attacker)
}

// WholeSeries builds the record of a whole series, given in any order, and
// its state: from the record where it is exact, else by the merger over
// every point.
func WholeSeries(kind Kind, points []Point, t Thresholds) (Series, State) {
	series := NewSeries(kind, points, t)
	if series.Exact() {
		return series, series.State(t)
	}
	sorted := slices.Clone(points)
	SortPoints(sorted)
	return series, Merge(kind, sorted, t)
}

// Reconcile brings the identity's flagged set in line with the current
// state of one series: the primitive is flagged exactly when the series is
// in multi_actor. It applies the change through Flag, so the suspicion
// rule fires and re-arms as it does after a transition, and returns the
// suspicion event to enqueue (or nil) and whether the record changed.
//
// After a transition, Reconcile does what Flag does; it also repairs a
// flagged set that disagrees with the states for any other reason.
func (r *IdentityRecord) Reconcile(rec *SeriesRecord, t Thresholds) (*MultiActorSuspected, bool) {
	word, ts := StateUnknown, 0.0
	if rec.Current != nil {
		word, ts = rec.Current.State, rec.Current.LastObservationTS
	}
	_, flagged := slices.BinarySearch(r.Flagged, rec.Key.Primitive)
	if flagged == (word == StateMultiActor) {
		return nil, false
	}
	return r.Flag(&StateChanged{
		IdentityUUID: r.IdentityUUID,
		AttackerUUID: rec.AttackerUUID,
		Primitive:    rec.Key.Primitive,
		NewState:     word,
		TS:           ts,
	}, t), true
}

// ReconcileAll brings the flagged set in line with the current states of
// several series of the identity at once, as one change: the suspicion
// rule is evaluated once, on the resulting set, so that rebuilding the
// series one after another raises no suspicion about a set that only
// existed halfway. It returns the suspicion event (or nil), the record
// whose outbox it belongs in (the changed series observed last), and
// whether the identity record changed.
func (r *IdentityRecord) ReconcileAll(recs []*SeriesRecord, t Thresholds) (*MultiActorSuspected, *SeriesRecord, bool) {
	var changed []*SeriesRecord
	for _, rec := range recs {
		_, flagged := slices.BinarySearch(r.Flagged, rec.Key.Primitive)
		if flagged != (rec.Current != nil && rec.Current.State == StateMultiActor) {
			changed = append(changed, rec)
		}
	}
	if len(changed) == 0 {
		return nil, nil, false
	}
	lastObserved := func(rec *SeriesRecord) float64 {
		if rec.Current == nil {
			return 0
		}
		return rec.Current.LastObservationTS
	}
	slices.SortFunc(changed, func(a, b *SeriesRecord) int {
		return cmp.Or(cmp.Compare(lastObserved(a), lastObserved(b)), strings.Compare(a.Key.Primitive, b.Key.Primitive))
	})
	last := changed[len(changed)-1]
	for _, rec := range changed[:len(changed)-1] {
		i, flagged := slices.BinarySearch(r.Flagged, rec.Key.Primitive)
		if flagged {
			r.Flagged = slices.Delete(r.Flagged, i, i+1)
		} else {
			r.Flagged = slices.Insert(r.Flagged, i, rec.Key.Primitive)
		}
	}
	s, _ := r.Reconcile(last, t)
	return s, last, true
}
