package attribution

import (
	"crypto/sha1"
	"fmt"
	"slices"
	"time"
)

// SeriesKey names one (identity, primitive) series.
type SeriesKey struct {
	IdentityUUID string
	Primitive    string
}

func (k SeriesKey) String() string { return k.IdentityUUID + "|" + k.Primitive }

// SeriesRecord is everything persisted about one series besides its
// observations: the incremental record, the current state, the transition
// bookkeeping and the outbox of events that no observation carries (a
// rebuild's) not yet acknowledged by the bus.
type SeriesRecord struct {
	Key SeriesKey `json:"-"`
	// Version is 0 for a record never stored; stores compare it on write.
	Version int64  `json:"-"`
	Series  Series `json:"series"`
	// Current is nil until the first observation.
	Current      *State  `json:"current,omitempty"`
	LastChangeTS float64 `json:"last_change_ts"`
	// Transitions counts state_changed events; it is the sequence of the last.
	Transitions  int64  `json:"transitions"`
	AttackerUUID string `json:"attacker_uuid"`
	// Outbox holds events at positions above Published, in position order.
	Outbox       []Event `json:"outbox,omitempty"`
	NextPosition int64   `json:"next_position"`
	Published    int64   `json:"-"` // stored apart so acks never conflict with writers
	// Membership is the identity's membership version the record was
	// computed under (see IdentityNode.Membership).
	Membership int64 `json:"mv,omitempty"`
	// Inline holds, oldest first, observations the record applied whose
	// items are not known to be written: the record is the commit point and
	// the items follow it (see the README's "Commit").
	Inline []InlineObservation `json:"inline,omitempty"`
	// Complete is set while Inline holds every observation of the series,
	// so that a delivery it does not hold is new without a read.
	Complete bool `json:"complete,omitempty"`
	// Young marks a record created by a single write and not yet known to
	// be visible to every later membership change (see the README's
	// "Creating a series"): it is checked against the identity record,
	// consistently, before anyone relies on it.
	Young bool `json:"young,omitempty"`

	// fresh marks, in a working copy only, a record with nothing stored
	// worth keeping: never written, or an orphan it replaces.
	fresh bool
	// unvouched marks, in a working copy only, a young record read while
	// a membership change holds the identity: what it holds may yet be an
	// orphan's, so a delivery it holds is not acknowledged.
	unvouched bool
}

// Orphaned reports whether the record is young under an older membership
// than the identity's: a membership change committed without seeing it,
// so its creator's check failed, and what it holds was never acknowledged
// and is delivered again.
func (r *SeriesRecord) Orphaned(membership int64) bool {
	return r.Young && r.Version > 0 && r.Membership < membership
}

// Replacement returns a new record in place of an orphan: empty, written
// over the stored one.
func (r *SeriesRecord) Replacement(kind Kind, t Thresholds) *SeriesRecord {
	n := NewSeriesRecord(r.Key, kind, t)
	// Numbered from the start: the orphan's events never reached the bus.
	n.Version, n.fresh = r.Version, true
	return n
}

// InlineObservation is an observation held by its record.
type InlineObservation struct {
	Observation Observation `json:"o"`
	Revision    int         `json:"r"`
	// written is set, in a processor's cache only, once its item is stored:
	// the next commit of the record lets go of it.
	written bool
}

// Ref names the observation's item.
func (o InlineObservation) Ref() ObservationRef {
	return ObservationRef{Key: SeriesKey{IdentityUUID: StubIdentityID(o.Observation.AttackerUUID), Primitive: o.Observation.Primitive}, Ref: o.Observation.EvidenceRef}
}

// Write is the item write of the observation.
func (o InlineObservation) Write() ObservationWrite {
	ref := o.Ref()
	return ObservationWrite{Key: ref.Key, Observation: o.Observation, Revision: o.Revision}
}

// A record holds at most MaxInline observations inline, together at most
// MaxInlineBytes of JSON: within them a short series lives in its record
// alone, one write per observation, and a long one keeps its record within
// one write unit.
const (
	MaxInline      = 6
	MaxInlineBytes = 2048
)

// putInline holds o, replacing an older revision of it.
func (r *SeriesRecord) putInline(o InlineObservation) {
	if i := r.inlineOf(o.Observation); i >= 0 {
		r.Inline = slices.Delete(r.Inline, i, i+1)
	}
	r.Inline = append(r.Inline, o)
}

// overflow returns the inline observations past the record's budget,
// oldest first: their items are to be written before the record lets go.
func (r *SeriesRecord) overflow() []InlineObservation {
	kept, bytes := 0, 0
	i := len(r.Inline)
	for i > 0 && kept < MaxInline {
		n := jsonBytes(r.Inline[i-1].Observation)
		if kept > 0 && bytes+n > MaxInlineBytes {
			break
		}
		kept, bytes, i = kept+1, bytes+n, i-1
	}
	return r.Inline[:i]
}

// release lets go of the inline observations past the budget whose items
// are written. The record then no longer holds its whole series.
func (r *SeriesRecord) release() {
	over := len(r.overflow())
	kept := r.Inline[:0:0]
	for i, o := range r.Inline {
		if i < over && o.written {
			r.Complete = false
			continue
		}
		kept = append(kept, o)
	}
	r.Inline = kept
}

// Observations returns the whole series: items, the stored observations of
// its members, overlaid by what the record holds inline (newer than any
// item of theirs).
func (r *SeriesRecord) Observations(items []Observation) []Observation {
	byKey := make(map[string]int, len(items)+len(r.Inline))
	out := make([]Observation, 0, len(items)+len(r.Inline))
	put := func(o Observation) {
		k := pointKey(SeriesKey{IdentityUUID: StubIdentityID(o.AttackerUUID), Primitive: o.Primitive}, o.EvidenceRef)
		if i, ok := byKey[k]; ok {
			out[i] = o
			return
		}
		byKey[k] = len(out)
		out = append(out, o)
	}
	for _, o := range items {
		put(o)
	}
	for _, o := range r.Inline {
		put(o.Observation)
	}
	return out
}

// HoldSeries holds the observations of a whole series, given in order, as the
// processor leaves them: the newest within the budget inline, the rest
// returned for their items to be written (the record then no longer holds
// the whole series). For tools that store a series at once.
func (r *SeriesRecord) HoldSeries(observations []Observation) []Observation {
	r.Inline = make([]InlineObservation, len(observations))
	for i, o := range observations {
		r.Inline[i] = InlineObservation{Observation: o, Revision: 1}
	}
	r.Complete = true
	over := r.overflow()
	items := make([]Observation, len(over))
	for i := range over {
		r.Inline[i].written = true
		items[i] = over[i].Observation
	}
	r.release()
	return items
}

// markWritten notes that the items under refs are stored.
func (r *SeriesRecord) markWritten(refs []ObservationRef) {
	for _, ref := range refs {
		if i := slices.IndexFunc(r.Inline, func(o InlineObservation) bool { return o.Ref() == ref }); i >= 0 {
			r.Inline[i].written = true
		}
	}
}

// inlineOf returns the index of the inline observation with o's key (its
// attacker, primitive and evidence ref), or -1.
func (r *SeriesRecord) inlineOf(o Observation) int {
	return slices.IndexFunc(r.Inline, func(in InlineObservation) bool {
		x := in.Observation
		return x.EvidenceRef == o.EvidenceRef && x.AttackerUUID == o.AttackerUUID && x.Primitive == o.Primitive
	})
}

// NewSeriesRecord is the record of a series not seen before: it holds all
// of its observations (none).
func NewSeriesRecord(key SeriesKey, kind Kind, t Thresholds) *SeriesRecord {
	return &SeriesRecord{Key: key, Series: EmptySeries(kind, t), Complete: true}
}

// Clone returns a deep copy, as stored: not fresh.
func (r *SeriesRecord) Clone() *SeriesRecord {
	c := *r
	c.fresh, c.unvouched = false, false
	c.Series = r.Series.Clone()
	if r.Current != nil {
		cur := *r.Current
		c.Current = &cur
	}
	c.Outbox = slices.Clone(r.Outbox)
	c.Inline = slices.Clone(r.Inline)
	return &c
}

// Pending returns the outbox events not yet acknowledged.
func (r *SeriesRecord) Pending() []Event {
	var out []Event
	for _, e := range r.Outbox {
		if e.Position > r.Published {
			out = append(out, e)
		}
	}
	return out
}

// Transition records the new state after an observation by attacker and
// returns the state_changed event if the state word changed (or there was
// no state before). last_change_ts moves only on a transition: it is the
// "stable since" of the current state. The event is the caller's to keep:
// the processor stores it with the observation that caused it.
func (r *SeriesRecord) Transition(next State, attacker string) *StateChanged {
	prior := r.Current
	r.AttackerUUID = attacker
	cur := next
	r.Current = &cur
	if prior != nil && prior.State == next.State {
		return nil
	}
	r.LastChangeTS = next.LastObservationTS
	r.Transitions++
	ev := &StateChanged{
		EventID:          EventID(EventStateChanged, r.Key.String(), r.Transitions),
		Sequence:         r.Transitions,
		IdentityUUID:     r.Key.IdentityUUID,
		AttackerUUID:     attacker,
		Primitive:        r.Key.Primitive,
		NewState:         next.State,
		CurrentValue:     next.CurrentValue,
		Confidence:       next.Confidence,
		ObservationCount: next.ObservationCount,
		TS:               next.LastObservationTS,
	}
	if prior != nil {
		old := prior.State
		ev.OldState = &old
	}
	return ev
}

// Settle is Transition with the event queued in the record's outbox: for
// changes no stored observation carries, such as a rebuild's.
func (r *SeriesRecord) Settle(next State, attacker string) (*StateChanged, error) {
	ev := r.Transition(next, attacker)
	if ev == nil {
		return nil, nil
	}
	e, err := ev.Event()
	if err != nil {
		return nil, err
	}
	r.enqueue(e)
	return ev, nil
}

// Enqueue adds a multi_actor_suspected event to this series' outbox, after
// the transition that raised it (a rebuild's: see Settle).
func (r *SeriesRecord) Enqueue(ev *MultiActorSuspected) error {
	e, err := ev.Event()
	if err != nil {
		return err
	}
	r.enqueue(e)
	return nil
}

func (r *SeriesRecord) enqueue(e Event) {
	// Drop what the bus has acknowledged so the outbox stays short.
	r.Outbox = r.Pending()
	r.NextPosition++
	e.Position = r.NextPosition
	r.Outbox = append(r.Outbox, e)
}

// IdentityRecord is the identity-level state of the cross-primitive
// multi_actor_suspected rule: which primitives are in multi_actor now and
// which set last raised the suspicion. Persisting it makes the dedupe
// survive restarts.
type IdentityRecord struct {
	IdentityUUID string `json:"-"`
	Version      int64  `json:"-"`
	// Seal is the stamp of the membership change under way: set before it
	// reads the identity's records, cleared by its commit. A series
	// created by a single write while it is set fails its check.
	Seal     Stamp    `json:"seal,omitzero"`
	SealedAt float64  `json:"sealed_at,omitempty"` // unix seconds
	Flagged  []string `json:"flagged,omitempty"`
	// Fired is the flagged set when the suspicion was last raised; nil means
	// armed (the set fell below the minimum since).
	Fired      []string `json:"fired,omitempty"`
	Suspicions int64    `json:"suspicions"`
	IdentityNode
}

// SealLifetime is how long a seal holds other membership changes off:
// past it, the change that set it is taken for dead and another takes the
// seal over (which makes the first one's commit fail, if it was only
// slow). Observations never wait on a seal.
const SealLifetime = 3 * time.Second

// Sealed reports whether a membership change holds the identity at now.
func (r *IdentityRecord) Sealed(now time.Time) bool {
	return !r.Seal.IsZero() && now.Before(r.sealExpires())
}

func (r *IdentityRecord) sealBy(s Stamp, now time.Time) {
	r.Seal, r.SealedAt = s, float64(now.UnixNano())/1e9
}

func (r *IdentityRecord) sealExpires() time.Time {
	return time.Unix(0, int64(r.SealedAt*1e9)).Add(SealLifetime)
}

// Vouches reports whether a record of the identity is known to be visible
// to every later membership change, so that its events may be published:
// any record but a young one; a young one if the identity record, read
// after it, is unsealed and at the membership it was computed under.
func (r *IdentityRecord) Vouches(rec *SeriesRecord) bool {
	return !rec.Young || r.Seal.IsZero() && rec.Membership == r.Membership
}

// Clone returns a deep copy.
func (r *IdentityRecord) Clone() *IdentityRecord {
	c := *r
	c.Flagged = slices.Clone(r.Flagged)
	c.Fired = slices.Clone(r.Fired)
	c.IdentityNode = r.IdentityNode.clone()
	return &c
}

// Touches reports whether a transition between two state words can change
// the identity's flagged set.
func Touches(change *StateChanged) bool {
	return change != nil && (change.NewState == StateMultiActor || change.OldState != nil && *change.OldState == StateMultiActor)
}

// Flag applies a transition of one primitive and returns the suspicion
// event if the flagged set, at or above the minimum, differs from the one
// that last fired. Below the minimum the rule re-arms.
func (r *IdentityRecord) Flag(change *StateChanged, t Thresholds) *MultiActorSuspected {
	i, found := slices.BinarySearch(r.Flagged, change.Primitive)
	switch {
	case change.NewState == StateMultiActor && !found:
		r.Flagged = slices.Insert(r.Flagged, i, change.Primitive)
	case change.NewState != StateMultiActor && found:
		r.Flagged = slices.Delete(r.Flagged, i, i+1)
	}
	if len(r.Flagged) < t.MultiActorMinPrimitives {
		r.Fired = nil
		return nil
	}
	if slices.Equal(r.Flagged, r.Fired) {
		return nil
	}
	r.Fired = slices.Clone(r.Flagged)
	r.Suspicions++
	id := EventID(EventMultiActorSuspected, r.IdentityUUID, r.Suspicions)
	return &MultiActorSuspected{
		EventID:         id,
		Sequence:        r.Suspicions,
		IdentityUUID:    r.IdentityUUID,
		AttackerUUID:    change.AttackerUUID,
		Primitives:      slices.Clone(r.Flagged),
		EvidenceSummary: fmt.Sprintf("%d primitives flagged multi_actor", len(r.Flagged)),
		Confidence:      t.MultiActorSuspectedScore,
		TS:              change.TS,
	}
}

// StubIdentityID is the identity a new attacker gets: derived from the
// attacker, so every first sighting proposes the same one.
func StubIdentityID(attackerUUID string) string {
	sum := sha1.Sum([]byte("decnet-attribution/identity\x00" + attackerUUID))
	sum[6] = (sum[6] & 0x0f) | 0x50 // version 5 layout
	sum[8] = (sum[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
}
