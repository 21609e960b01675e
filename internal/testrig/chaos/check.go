package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/config"
	"decnet-attribution/internal/testrig/devstack"
)

// maxProblems bounds the problems a report lists (the counts are exact).
const maxProblems = 25

// Verdicts are the checks of one run. Every count must be zero, and DLQ
// must equal DLQWant, for the run to pass.
type Verdicts struct {
	// Lost counts transitions expected and never delivered (including
	// breaks in a series' chain), observations missing from a series'
	// count, and valid messages that ended in the dead-letter queue.
	Lost int
	// DoubleCounted counts series (and events) whose observation_count is
	// above the number of distinct observations sent.
	DoubleCounted int
	// UnexpectedEvents counts delivered events the replay does not have,
	// or with other content, or that break a chain.
	UnexpectedEvents int
	// DuplicateEventsWithNewID counts one transition delivered under more
	// than one event_id. Delivering one event_id more than once (an exact
	// redelivery: delivery is at least once) is allowed.
	DuplicateEventsWithNewID int
	// ConflictingDuplicates counts event_ids delivered more than once with
	// different details.
	ConflictingDuplicates int
	// StateMismatches counts series whose stored state differs from the
	// replay's.
	StateMismatches int
	// AlertMismatches counts events the alert rule should have delivered
	// to the alerts queue and did not, or should not have and did.
	AlertMismatches int
	// DLQ is the number of distinct malformed messages found in the
	// dead-letter queue; DLQWant the number sent.
	DLQ, DLQWant int
	// DLQWithoutReason counts dead letters whose reason is neither in
	// their attributes nor in the function's log, or differs from the
	// decoder's.
	DLQWithoutReason int
	// DLQDuplicates counts extra copies of a dead letter (at-least-once
	// sends; not a violation).
	DLQDuplicates int
	// CommitLogMismatches counts identities whose commits, as the function
	// saw them succeed (single-poller runs), differ from those DynamoDB
	// applied, in content or order; AppliedUnknown counts commits whose
	// outcome the function's side could not establish.
	CommitLogMismatches int
	AppliedUnknown      int
	// UnionMismatches counts canonical series whose stored state is not the
	// reference merger over the union of the observations of the
	// attackers DECNET's final membership gives the identity (a
	// from-scratch replay); MembershipMismatches attackers that do not
	// resolve to the identity the final membership says.
	UnionMismatches      int
	MembershipMismatches int
	// IdentityReports counts identity events found in the dead-letter
	// queue with the reason the replay gives for them (an unmerge that
	// arrived before its merge: applied all the same); ReportsWant the
	// replay's. The loser's record keeps the report for the event's
	// redelivery, but a later change of the loser replaces it, so a report
	// can still be missing: not a violation.
	IdentityReports, ReportsWant int
	Problems                     []string
}

// OK reports whether every check passed.
func (v Verdicts) OK() bool {
	return v.Lost == 0 && v.DoubleCounted == 0 && v.UnexpectedEvents == 0 && v.DuplicateEventsWithNewID == 0 &&
		v.ConflictingDuplicates == 0 && v.StateMismatches == 0 && v.AlertMismatches == 0 &&
		v.DLQ == v.DLQWant && v.DLQWithoutReason == 0 && v.CommitLogMismatches == 0 && v.AppliedUnknown == 0 &&
		v.UnionMismatches == 0 && v.MembershipMismatches == 0
}

func (v *Verdicts) problem(format string, args ...any) {
	if len(v.Problems) < maxProblems {
		v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
	}
}

// observed is what a run left in AWS and in the function's logs.
type observed struct {
	events, alerts []devstack.BusEvent
	dlq            []DeadLetter
	records        map[attribution.SeriesKey]*attribution.SeriesRecord
	identities     map[string]*attribution.IdentityRecord
	attackers      map[string]*attribution.AttackerRecord // identity streams only
	// journal is what DynamoDB applied, in order; written adds what the
	// function wrote into records that became orphans (applied as writes,
	// never as observations); applied is what the function saw applied
	// (single-poller runs only).
	journal        []applied
	written        []attribution.Observation
	applied        []attribution.Observation
	appliedUnknown int
	logs           string
}

func collect(ctx context.Context, st *stack, stream *Stream) (*observed, error) {
	series := map[string][]string{}
	for _, m := range stream.Messages {
		if m.Kind != KindMalformed && m.EventID == "" && !slices.Contains(series[m.Key.Attacker], m.Key.Primitive) {
			series[m.Key.Attacker] = append(series[m.Key.Attacker], m.Key.Primitive)
		}
	}
	var o observed
	var err error
	if o.events, err = st.busEvents(ctx, st.eventsURL); err != nil {
		return nil, err
	}
	if o.alerts, err = st.busEvents(ctx, st.AlertsQueue.URL); err != nil {
		return nil, err
	}
	if o.dlq, err = st.deadLetters(ctx); err != nil {
		return nil, err
	}
	if stream.clusterer != nil {
		var attackers []string
		for _, as := range stream.Membership() {
			attackers = append(attackers, as...)
		}
		o.records, o.identities, o.attackers, err = st.finalIdentities(ctx, attackers, stream.identityIDs())
	} else {
		o.records, o.identities, err = st.finalRecords(ctx, series)
	}
	if err != nil {
		return nil, err
	}
	return &o, nil
}

// EventSummary counts what reached the event queues.
type EventSummary struct {
	StateChanged, Suspicions, Rekeyed int // distinct events
	Deliveries                        int // deliveries to the events queue
	Alerts, AlertDeliveries           int
	DeadLetters                       int
}

func (o *observed) eventSummary() EventSummary {
	var s EventSummary
	seen := map[string]bool{}
	for _, e := range o.events {
		s.Deliveries++
		id := eventIDOf(e)
		if seen[id] {
			continue
		}
		seen[id] = true
		switch e.DetailType {
		case attribution.EventStateChanged:
			s.StateChanged++
		case attribution.EventIdentityRekeyed:
			s.Rekeyed++
		default:
			s.Suspicions++
		}
	}
	alerts := map[string]bool{}
	for _, e := range o.alerts {
		s.AlertDeliveries++
		alerts[eventIDOf(e)] = true
	}
	s.Alerts = len(alerts)
	s.DeadLetters = len(o.dlq)
	return s
}

func eventIDOf(e devstack.BusEvent) string {
	var d struct {
		EventID string `json:"event_id"`
	}
	_ = json.Unmarshal(e.Detail, &d)
	return d.EventID
}

// event is a delivered or expected event, decoded.
type event struct {
	id, detailType, subject string
	sequence                int64
	detail                  map[string]any
	sc                      *attribution.StateChanged
	ms                      *attribution.MultiActorSuspected
	rk                      *attribution.IdentityRekeyed
}

func decodeEvent(detailType string, raw json.RawMessage) (*event, error) {
	e := &event{detailType: detailType}
	if err := json.Unmarshal(raw, &e.detail); err != nil {
		return nil, fmt.Errorf("decode %s detail: %w", detailType, err)
	}
	switch detailType {
	case attribution.EventStateChanged:
		e.sc = &attribution.StateChanged{}
		if err := json.Unmarshal(raw, e.sc); err != nil {
			return nil, fmt.Errorf("decode state_changed: %w", err)
		}
		e.id, e.sequence = e.sc.EventID, e.sc.Sequence
		e.subject = attribution.SeriesKey{IdentityUUID: e.sc.IdentityUUID, Primitive: e.sc.Primitive}.String()
	case attribution.EventMultiActorSuspected:
		e.ms = &attribution.MultiActorSuspected{}
		if err := json.Unmarshal(raw, e.ms); err != nil {
			return nil, fmt.Errorf("decode multi_actor_suspected: %w", err)
		}
		e.id, e.sequence, e.subject = e.ms.EventID, e.ms.Sequence, e.ms.IdentityUUID
	case attribution.EventIdentityRekeyed:
		e.rk = &attribution.IdentityRekeyed{}
		if err := json.Unmarshal(raw, e.rk); err != nil {
			return nil, fmt.Errorf("decode identity.rekeyed: %w", err)
		}
		e.id, e.sequence, e.subject = e.rk.EventID, e.rk.Sequence, e.rk.IdentityUUID
	default:
		return nil, fmt.Errorf("unknown detail type %q", detailType)
	}
	return e, nil
}

// signature is an event's content without its identifiers: the same
// transition twice has one signature.
func (e *event) signature() string {
	d := make(map[string]any, len(e.detail))
	for k, v := range e.detail {
		if k != "event_id" && k != "sequence" {
			d[k] = v
		}
	}
	return e.detailType + " " + mustJSON(d)
}

// matchesAlertRule is the template's AlertRule pattern.
func (e *event) matchesAlertRule() bool {
	return e.ms != nil || e.sc != nil && (e.sc.NewState == attribution.StateMultiActor || e.sc.NewState == attribution.StateDrifting)
}

func check(ctx context.Context, sc Scenario, stream *Stream, obs *observed, cfg config.Config) (Verdicts, error) {
	v := Verdicts{AppliedUnknown: obs.appliedUnknown}
	if v.AppliedUnknown > 0 {
		v.problem("%d commit(s) of unknown outcome on the function's side", v.AppliedUnknown)
	}
	refSend, err := Replay(ctx, bodiesOf(stream), cfg.Registry, cfg.Thresholds)
	if err != nil {
		return v, err
	}
	idEvents, err := stream.identityEvents()
	if err != nil {
		return v, err
	}
	jb, err := appliedBodies(obs.journal, idEvents)
	if err != nil {
		return v, err
	}
	refApplied, err := Replay(ctx, jb, cfg.Registry, cfg.Thresholds)
	if err != nil {
		return v, err
	}
	if sc.Sequential() {
		checkCommitLog(&v, obs.applied, obs.written)
	}

	delivered, err := indexDelivered(&v, obs.events)
	if err != nil {
		return v, err
	}
	checkChains(&v, delivered, obs.records, obs.identities)
	checkExact(&v, "the replay of the commits in the order DynamoDB applied them", delivered, refApplied.Events)
	if sc.SendOrder {
		checkExact(&v, "the replay of the send order", delivered, refSend.Events)
	}
	checkNewIDs(&v, delivered, refApplied)
	checkStates(&v, "the replay of the applied order", obs.records, refApplied.Records, true)
	if stream.clusterer != nil {
		// The states of canonical identities do not depend on the order;
		// those of retired ones, frozen when they were retired, do.
		checkMembership(&v, stream, obs)
		checkUnions(&v, stream, obs, cfg)
	} else if sc.Stream.Amendments == 0 {
		// Without amendments the final states do not depend on the order.
		checkStates(&v, "the replay of the send order", obs.records, refSend.Records, false)
	}
	checkCounts(&v, stream, obs.records, delivered)
	checkAlerts(&v, delivered, obs.alerts)
	checkDeadLetters(&v, stream, obs, cfg.Registry, refApplied)
	return v, nil
}

// checkCommitLog compares, series by series (an attacker's primitive),
// the observations the function saw committed with those DynamoDB
// applied, in order. Commits of one series are ordered by its record's
// version; those of several series of one identity go out together.
func checkCommitLog(v *Verdicts, seen, applied []attribution.Observation) {
	perSeries := func(obs []attribution.Observation) map[string][]string {
		out := map[string][]string{}
		for _, o := range obs {
			k := o.AttackerUUID + "|" + o.Primitive
			out[k] = append(out[k], o.EvidenceRef+" "+o.Fingerprint())
		}
		return out
	}
	a, b := perSeries(seen), perSeries(applied)
	for series := range b {
		if _, ok := a[series]; !ok {
			a[series] = nil
		}
	}
	for series, got := range a {
		if !slices.Equal(got, b[series]) {
			v.CommitLogMismatches++
			v.problem("series %s: the function saw %d commits applied, DynamoDB applied %d, not the same in order", series, len(got), len(b[series]))
		}
	}
}

// indexDelivered decodes the delivered events by event_id and checks that
// every delivery of one event_id is the same event.
func indexDelivered(v *Verdicts, raw []devstack.BusEvent) (map[string]*event, error) {
	byID := map[string]*event{}
	for _, b := range raw {
		if b.Source != attribution.EventSource {
			v.UnexpectedEvents++
			v.problem("event from source %q", b.Source)
			continue
		}
		e, err := decodeEvent(b.DetailType, b.Detail)
		if err != nil {
			v.UnexpectedEvents++
			v.problem("undecodable event %s: %v", b.ID, err)
			continue
		}
		if want := attribution.EventID(e.detailType, e.subject, e.sequence); e.id != want {
			v.UnexpectedEvents++
			v.problem("event %s of %s sequence %d: event_id should be %s", e.id, e.subject, e.sequence, want)
		}
		if first, ok := byID[e.id]; ok {
			if !reflect.DeepEqual(first.detail, e.detail) {
				v.ConflictingDuplicates++
				v.problem("event_id %s delivered with different details: %s and %s", e.id, mustJSON(first.detail), mustJSON(e.detail))
			}
			continue
		}
		byID[e.id] = e
	}
	return byID, nil
}

// checkChains checks, per series, that the state_changed events form an
// unbroken chain ending in the stored state, and per identity that the
// suspicions are numbered without gaps and end in the stored flagged set.
func checkChains(v *Verdicts, delivered map[string]*event, records map[attribution.SeriesKey]*attribution.SeriesRecord, idents map[string]*attribution.IdentityRecord) {
	chains := map[string][]*event{}
	suspicions := map[string][]*event{}
	rekeys := map[string][]*event{}
	for _, e := range delivered {
		switch {
		case e.sc != nil:
			chains[e.subject] = append(chains[e.subject], e)
		case e.rk != nil:
			rekeys[e.subject] = append(rekeys[e.subject], e)
		default:
			suspicions[e.subject] = append(suspicions[e.subject], e)
		}
	}
	checkRekeys(v, rekeys, idents)
	for key, rec := range records {
		if rec.Current == nil {
			continue
		}
		if _, ok := chains[key.String()]; !ok {
			v.Lost += int(rec.Transitions)
			v.problem("series %s (%s): %d transition(s) stored, none delivered", key, rec.AttackerUUID, rec.Transitions)
		}
	}
	for subject, evs := range chains {
		sort.Slice(evs, func(i, j int) bool { return evs[i].sequence < evs[j].sequence })
		var prev *event
		for _, e := range evs {
			want := int64(1)
			if prev != nil {
				want = prev.sequence + 1
			}
			switch {
			case e.sequence < want: // two events for one sequence (distinct IDs cannot share one)
				v.UnexpectedEvents++
				v.problem("series %s: second event for sequence %d", subject, e.sequence)
				continue
			case e.sequence > want:
				v.Lost += int(e.sequence - want)
				v.problem("series %s: sequence %d..%d never delivered", subject, want, e.sequence-1)
			case prev == nil && e.sc.OldState != nil:
				v.UnexpectedEvents++
				v.problem("series %s: first transition has old_state %s", subject, *e.sc.OldState)
			case prev != nil && (e.sc.OldState == nil || *e.sc.OldState != prev.sc.NewState):
				v.UnexpectedEvents++
				v.problem("series %s: sequence %d has old_state %v after new_state %s", subject, e.sequence, deref(e.sc.OldState), prev.sc.NewState)
			}
			prev = e
		}
		last := evs[len(evs)-1]
		key := attribution.SeriesKey{IdentityUUID: last.sc.IdentityUUID, Primitive: last.sc.Primitive}
		rec := records[key]
		switch {
		case rec == nil || rec.Current == nil:
			v.UnexpectedEvents += len(evs)
			v.problem("series %s: %d event(s) delivered for a series with no stored state", subject, len(evs))
		case rec.Transitions > last.sequence:
			v.Lost += int(rec.Transitions - last.sequence)
			v.problem("series %s: %d transitions stored, the last delivered is sequence %d", subject, rec.Transitions, last.sequence)
		case rec.Transitions < last.sequence:
			v.UnexpectedEvents += int(last.sequence - rec.Transitions)
			v.problem("series %s: sequence %d delivered, only %d transitions stored", subject, last.sequence, rec.Transitions)
		case last.sc.NewState != rec.Current.State:
			v.UnexpectedEvents++
			v.problem("series %s: chain ends in %s, stored state is %s", subject, last.sc.NewState, rec.Current.State)
		}
	}
	for identity, rec := range idents {
		evs := suspicions[identity]
		sort.Slice(evs, func(i, j int) bool { return evs[i].sequence < evs[j].sequence })
		var prev *event
		for i, e := range evs {
			if e.sequence != int64(i+1) && (prev == nil || e.sequence != prev.sequence+1) {
				v.Lost++
				v.problem("identity %s: suspicion sequence %d follows %d", identity, e.sequence, seqOf(prev))
			}
			prev = e
		}
		if int64(len(evs)) < rec.Suspicions {
			v.Lost += int(rec.Suspicions) - len(evs)
			v.problem("identity %s: %d suspicions stored, %d delivered", identity, rec.Suspicions, len(evs))
		} else if int64(len(evs)) > rec.Suspicions {
			v.UnexpectedEvents += len(evs) - int(rec.Suspicions)
			v.problem("identity %s: %d suspicions delivered, %d stored", identity, len(evs), rec.Suspicions)
		}
		var flagged []string
		for key, r := range records {
			if key.IdentityUUID == identity && r.Current != nil && r.Current.State == attribution.StateMultiActor {
				flagged = append(flagged, key.Primitive)
			}
		}
		sort.Strings(flagged)
		if len(flagged) >= 2 && (prev == nil || !slices.Equal(prev.ms.Primitives, flagged)) {
			v.Lost++
			v.problem("identity %s: primitives %v are multi_actor, the last suspicion delivered names %v", identity, flagged, primitivesOf(prev))
		}
	}
	for identity, evs := range suspicions {
		if _, ok := idents[identity]; !ok {
			v.UnexpectedEvents += len(evs)
			v.problem("identity %s: suspicions about an identity the stream does not have", identity)
		}
	}
}

// checkRekeys checks, per identity, that its rekeyed events are numbered
// 1..n without a gap, n the count its record keeps.
func checkRekeys(v *Verdicts, rekeys map[string][]*event, idents map[string]*attribution.IdentityRecord) {
	for identity, rec := range idents {
		evs := rekeys[identity]
		sort.Slice(evs, func(i, j int) bool { return evs[i].sequence < evs[j].sequence })
		for i, e := range evs {
			if e.sequence != int64(i+1) {
				v.Lost++
				v.problem("identity %s: rekeyed sequence %d where %d was due", identity, e.sequence, i+1)
				break
			}
		}
		switch n := int64(len(evs)); {
		case n < rec.Rekeys:
			v.Lost += int(rec.Rekeys - n)
			v.problem("identity %s: %d rekeyed events stored, %d delivered", identity, rec.Rekeys, n)
		case n > rec.Rekeys:
			v.UnexpectedEvents += int(n - rec.Rekeys)
			v.problem("identity %s: %d rekeyed events delivered, %d stored", identity, n, rec.Rekeys)
		}
	}
	for identity, evs := range rekeys {
		if _, ok := idents[identity]; !ok {
			v.UnexpectedEvents += len(evs)
			v.problem("identity %s: rekeyed events about an identity the stream does not have", identity)
		}
	}
}

func seqOf(e *event) int64 {
	if e == nil {
		return 0
	}
	return e.sequence
}

func primitivesOf(e *event) []string {
	if e == nil {
		return nil
	}
	return e.ms.Primitives
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// checkExact compares the delivered events with the replay's, event by
// event (numbers with a relative tolerance of 1e-9).
func checkExact(v *Verdicts, what string, delivered map[string]*event, want []attribution.Event) {
	expected := map[string]*event{}
	for _, w := range want {
		e, err := decodeEvent(w.DetailType, w.Detail)
		if err != nil {
			v.UnexpectedEvents++
			v.problem("replay event %s: %v", w.ID, err)
			continue
		}
		expected[e.id] = e
	}
	for id, w := range expected {
		d, ok := delivered[id]
		switch {
		case !ok:
			v.Lost++
			v.problem("%s %s sequence %d (%s) expected from %s, not delivered", w.detailType, w.subject, w.sequence, brief(w), what)
		case !sameJSON(d.detail, w.detail):
			v.UnexpectedEvents++
			v.problem("%s %s sequence %d: delivered %s, %s has %s", w.detailType, w.subject, w.sequence, mustJSON(d.detail), what, mustJSON(w.detail))
		}
	}
	for id, d := range delivered {
		if _, ok := expected[id]; !ok {
			v.UnexpectedEvents++
			v.problem("%s %s sequence %d (%s) delivered, not in %s", d.detailType, d.subject, d.sequence, brief(d), what)
		}
	}
}

func brief(e *event) string {
	switch {
	case e.sc != nil:
		return fmt.Sprintf("%v→%s at count %d", deref(e.sc.OldState), e.sc.NewState, e.sc.ObservationCount)
	case e.rk != nil:
		return fmt.Sprintf("into %s %v", e.rk.Into, e.rk.Primitives)
	}
	return fmt.Sprint(e.ms.Primitives)
}

// checkNewIDs counts transitions delivered under more event_ids than the
// replay has for that content.
func checkNewIDs(v *Verdicts, delivered map[string]*event, ref *Reference) {
	want := map[string]int{}
	for _, w := range ref.Events {
		if e, err := decodeEvent(w.DetailType, w.Detail); err == nil {
			want[e.signature()]++
		}
	}
	got := map[string][]string{}
	for id, e := range delivered {
		sig := e.signature()
		got[sig] = append(got[sig], id)
	}
	for sig, ids := range got {
		if extra := len(ids) - max(1, want[sig]); extra > 0 {
			v.DuplicateEventsWithNewID += extra
			v.problem("one transition delivered under %d event_ids %v: %s", len(ids), ids, sig)
		}
	}
}

// checkStates compares stored records with the replay's. Order-dependent
// fields (last_change_ts, the transition count) only when ordered.
func checkStates(v *Verdicts, what string, got, want map[attribution.SeriesKey]*attribution.SeriesRecord, ordered bool) {
	for key, w := range want {
		if w.Current == nil {
			continue
		}
		g := got[key]
		if g == nil || g.Current == nil {
			v.Lost++
			v.problem("series %s (%s): no stored state, %s has %s", key, w.AttackerUUID, what, w.Current.State)
			continue
		}
		var diffs []string
		gc, wc := g.Current, w.Current
		if gc.State != wc.State {
			diffs = append(diffs, fmt.Sprintf("state %s, want %s", gc.State, wc.State))
		}
		if !sameValue(gc.CurrentValue, wc.CurrentValue) {
			diffs = append(diffs, fmt.Sprintf("current_value %s, want %s", gc.CurrentValue, wc.CurrentValue))
		}
		if !near(gc.Confidence, wc.Confidence) {
			diffs = append(diffs, fmt.Sprintf("confidence %v, want %v", gc.Confidence, wc.Confidence))
		}
		if gc.ObservationCount != wc.ObservationCount {
			diffs = append(diffs, fmt.Sprintf("observation_count %d, want %d", gc.ObservationCount, wc.ObservationCount))
		}
		if gc.LastObservationTS != wc.LastObservationTS {
			diffs = append(diffs, fmt.Sprintf("last_observation_ts %v, want %v", gc.LastObservationTS, wc.LastObservationTS))
		}
		if ordered && g.LastChangeTS != w.LastChangeTS {
			diffs = append(diffs, fmt.Sprintf("last_change_ts %v, want %v", g.LastChangeTS, w.LastChangeTS))
		}
		if ordered && g.Transitions != w.Transitions {
			diffs = append(diffs, fmt.Sprintf("transitions %d, want %d", g.Transitions, w.Transitions))
		}
		if len(diffs) > 0 {
			v.StateMismatches++
			v.problem("series %s (%s) differs from %s: %s", key, w.AttackerUUID, what, strings.Join(diffs, "; "))
		}
	}
	for key, g := range got {
		if w := want[key]; g.Current != nil && (w == nil || w.Current == nil) {
			v.StateMismatches++
			v.problem("series %s (%s): stored state %s, %s has none", key, g.AttackerUUID, g.Current.State, what)
		}
	}
}

// checkCounts compares each series' observation_count, stored and in its
// events, with the distinct observations sent.
// With identity events, a series is the canonical identity's: its count is
// that of the distinct observations of every attacker the final membership
// gives it, none lost or counted twice across merges and unmerges.
func checkCounts(v *Verdicts, stream *Stream, records map[attribution.SeriesKey]*attribution.SeriesRecord, delivered map[string]*event) {
	members := stream.Membership()
	canonical := map[string]string{}
	for c, as := range members {
		for _, a := range as {
			canonical[a] = c
		}
	}
	distinct := map[attribution.SeriesKey]map[string]bool{}
	for _, m := range stream.Messages {
		if m.Kind == KindMalformed || m.EventID != "" {
			continue
		}
		key := attribution.SeriesKey{IdentityUUID: canonical[m.Key.Attacker], Primitive: m.Key.Primitive}
		if distinct[key] == nil {
			distinct[key] = map[string]bool{}
		}
		distinct[key][m.Key.Attacker+" "+m.Key.EvidenceRef] = true
	}
	for key, rec := range records {
		if _, live := members[key.IdentityUUID]; live && distinct[key] == nil && rec.Current != nil && rec.Current.ObservationCount > 0 {
			v.DoubleCounted++
			v.problem("series %s: observation_count %d, no observation of its attackers sent", key, rec.Current.ObservationCount)
		}
	}
	for key, refs := range distinct {
		rec := records[key]
		n := 0
		if rec != nil && rec.Current != nil {
			n = rec.Current.ObservationCount
		}
		switch {
		case n > len(refs):
			v.DoubleCounted++
			v.problem("series %s: observation_count %d, %d distinct observations sent", key, n, len(refs))
		case n < len(refs):
			v.Lost += len(refs) - n
			v.problem("series %s: observation_count %d, %d distinct observations sent", key, n, len(refs))
		}
	}
	for _, e := range delivered {
		if e.sc == nil || stream.clusterer != nil {
			// With identity events a series' members change over time:
			// the events are checked against the replay instead.
			continue
		}
		key := attribution.SeriesKey{IdentityUUID: e.sc.IdentityUUID, Primitive: e.sc.Primitive}
		if e.sc.ObservationCount > len(distinct[key]) {
			v.DoubleCounted++
			v.problem("event %s of %s: observation_count %d, only %d distinct observations sent", e.id, key, e.sc.ObservationCount, len(distinct[key]))
		}
	}
}

// checkAlerts checks that the template's alert rule delivered exactly the
// events it matches.
func checkAlerts(v *Verdicts, delivered map[string]*event, alerts []devstack.BusEvent) {
	got := map[string]bool{}
	for _, b := range alerts {
		e, err := decodeEvent(b.DetailType, b.Detail)
		if err != nil {
			v.AlertMismatches++
			v.problem("undecodable alert %s: %v", b.ID, err)
			continue
		}
		got[e.id] = true
		if !e.matchesAlertRule() {
			v.AlertMismatches++
			v.problem("alert %s (%s) does not match the alert rule", e.id, brief(e))
		}
	}
	for id, e := range delivered {
		if e.matchesAlertRule() && !got[id] {
			v.AlertMismatches++
			v.problem("event %s (%s %s) matches the alert rule, never reached the alerts queue", id, e.subject, brief(e))
		}
	}
	for id := range got {
		if _, ok := delivered[id]; !ok {
			v.AlertMismatches++
			v.problem("alert %s never reached the events queue", id)
		}
	}
}

// checkDeadLetters checks that the dead-letter queue holds exactly the
// malformed messages sent, each with the decoder's reason.
//
// An identity event there must carry the reason the replay of the applied
// order gives for it: it was applied and reported (see Verdicts).
func checkDeadLetters(v *Verdicts, stream *Stream, obs *observed, reg attribution.Registry, ref *Reference) {
	sent := map[string]Message{}
	for _, m := range stream.Messages {
		if m.Kind == KindMalformed {
			v.DLQWant++
		}
		sent[m.Body] = m
	}
	logged := rejections(obs.logs)
	found := map[string]int{}
	reported := map[string]bool{}
	v.ReportsWant = len(ref.Reports)
	for _, d := range obs.dlq {
		m, ok := sent[d.Body]
		if ok && m.EventID != "" {
			reason := d.Reason
			if l, logged := logged[d.MessageID]; reason == "" && logged {
				reason = l.Reason
			}
			switch want, known := ref.Reports[m.EventID]; {
			case known && reason == want:
				if !reported[m.EventID] {
					reported[m.EventID] = true
					v.IdentityReports++
				}
			default:
				v.Lost++
				v.problem("dead letter %s is identity event %s (%s), reason %q; the replay reports %q", d.MessageID, m.EventID, m.Topic, reason, want)
			}
			continue
		}
		if !ok || m.Kind != KindMalformed {
			v.Lost++
			v.problem("dead letter %s (receive count %d) is a valid message: %s", d.MessageID, d.ReceiveCount, shorten(d.Body, 160))
			continue
		}
		found[d.Body]++
		err := Rejection(d.Body, reg)
		if err == nil {
			v.DLQWithoutReason++
			v.problem("dead letter %s: the decoder accepts it", d.MessageID)
			continue
		}
		reason, field := d.Reason, d.Field
		if reason == "" {
			l, ok := logged[d.MessageID]
			if !ok {
				l, ok = logged[d.SourceMessageID]
			}
			if !ok {
				v.DLQWithoutReason++
				v.problem("dead letter %s (%s): no reason in its attributes or the log", d.MessageID, m.Class)
				continue
			}
			reason, field = l.Reason, l.Field
		}
		wantField := attribution.ErrorField(err)
		if field == "-" {
			field = ""
		}
		if reason != err.Error() || field != wantField {
			v.DLQWithoutReason++
			v.problem("dead letter %s (%s): reason %q field %q, the decoder says %q field %q", d.MessageID, m.Class, reason, field, err.Error(), wantField)
		}
	}
	v.DLQ = len(found)
	for _, n := range found {
		v.DLQDuplicates += n - 1
	}
	for _, m := range stream.Messages {
		if m.Kind == KindMalformed && found[m.Body] == 0 {
			v.problem("malformed message (%s) never reached the dead-letter queue", m.Class)
		}
	}
}

// sameJSON compares decoded JSON, numbers with a relative tolerance.
func sameJSON(a, b any) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && near(x, y)
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !sameJSON(xv, yv) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(a, b)
	}
}

func sameValue(a, b attribution.Value) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return a == b
	}
	return sameJSON(x, y)
}

func near(a, b float64) bool {
	if a == b {
		return true
	}
	return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}
