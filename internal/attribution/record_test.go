package attribution_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"decnet-attribution/internal/attribution"
)

var testKey = attribution.SeriesKey{IdentityUUID: "id-1", Primitive: "motor.input_modality"}

func state(word string, confidence float64, count int, ts float64) attribution.State {
	return attribution.State{State: word, CurrentValue: `"typed"`, Confidence: confidence, ObservationCount: count, LastObservationTS: ts}
}

func mustSettle(tb testing.TB, r *attribution.SeriesRecord, s attribution.State) *attribution.StateChanged {
	tb.Helper()
	ev, err := r.Settle(s, "att-1")
	if err != nil {
		tb.Fatalf("Settle: %v", err)
	}
	return ev
}

// TestSettle walks one series through its transitions: which settle
// publishes, what the event says, how last_change_ts and the outbox move.
func TestSettle(t *testing.T) {
	r := attribution.NewSeriesRecord(testKey, attribution.Categorical, attribution.DefaultThresholds())
	steps := []struct {
		name       string
		next       attribution.State
		event      bool
		old        string // "" for null
		lastChange float64
	}{
		{"first state", state(attribution.StateUnknown, 0, 1, 10), true, "", 10},
		{"same word, more observations", state(attribution.StateUnknown, 0, 2, 20), false, "", 10},
		{"new word", state(attribution.StateStable, 1, 3, 30), true, attribution.StateUnknown, 30},
		{"same word, new confidence", state(attribution.StateStable, 0.8, 4, 40), false, "", 30},
		{"same word, new value", attribution.State{State: attribution.StateStable, CurrentValue: `"pasted"`, Confidence: 0.8, ObservationCount: 5, LastObservationTS: 50}, false, "", 30},
		{"multi_actor", state(attribution.StateMultiActor, 0.6, 6, 60), true, attribution.StateStable, 60},
		{"back to stable", state(attribution.StateStable, 1, 7, 70), true, attribution.StateMultiActor, 70},
	}
	var ids []string
	seq := int64(0)
	for _, st := range steps {
		ev := mustSettle(t, r, st.next)
		if *r.Current != st.next {
			t.Errorf("%s: current %+v, want %+v", st.name, *r.Current, st.next)
		}
		if r.LastChangeTS != st.lastChange {
			t.Errorf("%s: last_change_ts %v, want %v", st.name, r.LastChangeTS, st.lastChange)
		}
		if !st.event {
			if ev != nil {
				t.Errorf("%s: event %+v, want none", st.name, ev)
			}
			if r.Transitions != seq || int64(len(r.Pending())) != seq {
				t.Errorf("%s: transitions %d, %d pending; want %d", st.name, r.Transitions, len(r.Pending()), seq)
			}
			continue
		}
		seq++
		if ev == nil {
			t.Fatalf("%s: no event", st.name)
		}
		wantID := attribution.EventID(attribution.EventStateChanged, testKey.String(), seq)
		want := attribution.StateChanged{
			EventID: wantID, Sequence: seq, IdentityUUID: "id-1", AttackerUUID: "att-1", Primitive: testKey.Primitive,
			NewState: st.next.State, CurrentValue: st.next.CurrentValue, Confidence: st.next.Confidence,
			ObservationCount: st.next.ObservationCount, TS: st.next.LastObservationTS,
		}
		got := *ev
		got.OldState, want.OldState = nil, nil // compared below
		if got != want {
			t.Errorf("%s: event %+v, want %+v", st.name, got, want)
		}
		if (ev.OldState == nil) != (st.old == "") || ev.OldState != nil && *ev.OldState != st.old {
			t.Errorf("%s: old_state %v, want %q", st.name, ev.OldState, st.old)
		}
		if ev.EventID != wantID || ev.Sequence != seq || r.Transitions != seq {
			t.Errorf("%s: event %s seq %d (transitions %d), want %s seq %d", st.name, ev.EventID, ev.Sequence, r.Transitions, wantID, seq)
		}
		pending := r.Pending()
		last := pending[len(pending)-1]
		if last.ID != wantID || last.DetailType != attribution.EventStateChanged || last.Position != r.NextPosition {
			t.Errorf("%s: outbox tail %+v", st.name, last)
		}
		var detail map[string]any
		if err := json.Unmarshal(last.Detail, &detail); err != nil {
			t.Fatalf("%s: detail %s: %v", st.name, last.Detail, err)
		}
		if v, ok := detail["old_state"]; !ok || (st.old == "") != (v == nil) {
			t.Errorf("%s: detail old_state = %v (present %v)", st.name, v, ok)
		}
		for _, field := range []string{"event_id", "identity_uuid", "primitive", "new_state", "current_value", "confidence", "observation_count", "ts", "sequence", "attacker_uuid"} {
			if _, ok := detail[field]; !ok {
				t.Errorf("%s: detail lacks %s: %s", st.name, field, last.Detail)
			}
		}
		ids = append(ids, ev.EventID)
	}
	if len(slices.Compact(slices.Sorted(slices.Values(ids)))) != len(ids) {
		t.Errorf("event IDs repeat: %v", ids)
	}
	// Another record of the same series derives the same IDs.
	again := attribution.NewSeriesRecord(testKey, attribution.Categorical, attribution.DefaultThresholds())
	if ev := mustSettle(t, again, state(attribution.StateUnknown, 0, 1, 10)); ev.EventID != ids[0] {
		t.Errorf("IDs not deterministic: %s then %s", ids[0], ev.EventID)
	}
}

// TestOutbox checks positions, Pending against the acknowledged position,
// and that enqueueing drops what the bus acknowledged.
func TestOutbox(t *testing.T) {
	th := attribution.DefaultThresholds()
	r := attribution.NewSeriesRecord(testKey, attribution.Categorical, th)
	mustSettle(t, r, state(attribution.StateUnknown, 0, 1, 1))
	mustSettle(t, r, state(attribution.StateStable, 1, 3, 3))
	if err := r.Enqueue(&attribution.MultiActorSuspected{EventID: "s-1", IdentityUUID: "id-1", Primitives: []string{"a.b", "c.d"}}); err != nil {
		t.Fatal(err)
	}
	positions := func(es []attribution.Event) []int64 {
		var out []int64
		for _, e := range es {
			out = append(out, e.Position)
		}
		return out
	}
	if got := positions(r.Pending()); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("pending positions %v, want [1 2 3]", got)
	}
	if e := r.Pending()[2]; e.ID != "s-1" || e.DetailType != attribution.EventMultiActorSuspected {
		t.Errorf("suspicion entry %+v", e)
	}
	r.Published = 2
	if got := positions(r.Pending()); !slices.Equal(got, []int64{3}) {
		t.Errorf("after ack of 2: pending %v, want [3]", got)
	}
	if len(r.Outbox) != 3 {
		t.Errorf("acknowledged entries dropped before the next write: %d left", len(r.Outbox))
	}
	mustSettle(t, r, state(attribution.StateDrifting, 1, 6, 6))
	if got := positions(r.Outbox); !slices.Equal(got, []int64{3, 4}) {
		t.Errorf("outbox after the next transition %v, want [3 4]", got)
	}
	r.Published = 4
	if len(r.Pending()) != 0 {
		t.Errorf("everything acknowledged, %d pending", len(r.Pending()))
	}

	// The record survives JSON (Published is stored apart).
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back attribution.SeriesRecord
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.NextPosition != 4 || back.Transitions != 3 || back.Published != 0 || len(back.Outbox) != 2 || *back.Current != *r.Current {
		t.Errorf("round trip: %+v", back)
	}
	if strings.Contains(string(b), "published") {
		t.Errorf("Published is encoded with the record: %s", b)
	}
}

func TestSeriesRecordClone(t *testing.T) {
	r := attribution.NewSeriesRecord(testKey, attribution.Categorical, attribution.DefaultThresholds())
	r.Series.Add(attribution.Point{TS: 1, Ref: "a", Value: `"x"`})
	mustSettle(t, r, state(attribution.StateUnknown, 0, 1, 1))
	c := r.Clone()
	c.Current.State = "changed"
	c.Outbox[0].ID = "changed"
	c.Series.Tail[0].Ref = "changed"
	if r.Current.State == "changed" || r.Outbox[0].ID == "changed" || r.Series.Tail[0].Ref == "changed" {
		t.Fatalf("Clone shares memory with the original")
	}
}

func TestEventID(t *testing.T) {
	a := attribution.EventID(attribution.EventStateChanged, "id|p", 1)
	cases := []struct {
		name string
		id   string
	}{
		{"next sequence", attribution.EventID(attribution.EventStateChanged, "id|p", 2)},
		{"other subject", attribution.EventID(attribution.EventStateChanged, "id|q", 1)},
		{"other type", attribution.EventID(attribution.EventMultiActorSuspected, "id|p", 1)},
		{"ambiguous concatenation", attribution.EventID(attribution.EventStateChanged, "id|p1", 0)},
	}
	for _, tc := range cases {
		if tc.id == a {
			t.Errorf("%s: same ID %s", tc.name, a)
		}
	}
	if attribution.EventID(attribution.EventStateChanged, "id|p", 1) != a {
		t.Errorf("not deterministic")
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(a) {
		t.Errorf("ID %q is not 32 hex digits", a)
	}
}

func change(prim, old, next string, ts float64) *attribution.StateChanged {
	c := &attribution.StateChanged{IdentityUUID: "id-1", AttackerUUID: "att-" + prim, Primitive: prim, NewState: next, TS: ts}
	if old != "" {
		c.OldState = &old
	}
	return c
}

// TestIdentityFlag walks the cross-primitive rule step by step.
func TestIdentityFlag(t *testing.T) {
	const (
		ma = attribution.StateMultiActor
		st = attribution.StateStable
		cf = attribution.StateConflicted
	)
	th := attribution.DefaultThresholds()
	r := &attribution.IdentityRecord{IdentityUUID: "id-1"}
	steps := []struct {
		name string
		c    *attribution.StateChanged
		fire []string // nil: no event
	}{
		{"one primitive", change("p.a", st, ma, 1), nil},
		{"second: fire", change("p.b", st, ma, 2), []string{"p.a", "p.b"}},
		{"unrelated transition", change("p.x", "", st, 3), nil},
		{"unrelated transition of a flagged one's neighbour", change("p.c", st, cf, 4), nil},
		{"third: set changed, fire", change("p.c", cf, ma, 5), []string{"p.a", "p.b", "p.c"}},
		{"one leaves, still two: fire", change("p.a", ma, st, 6), []string{"p.b", "p.c"}},
		{"below two: re-arm", change("p.b", ma, cf, 7), nil},
		{"back to two: fire again", change("p.b", cf, ma, 8), []string{"p.b", "p.c"}},
		{"first sighting straight into multi_actor", change("p.d", "", ma, 9), []string{"p.b", "p.c", "p.d"}},
		{"multi_actor to multi_actor changes nothing", change("p.d", ma, ma, 10), nil},
	}
	seq := int64(0)
	for _, s := range steps {
		if !attribution.Touches(s.c) && s.fire != nil {
			t.Fatalf("%s: Touches is false for a firing change", s.name)
		}
		ev := r.Flag(s.c, th)
		if s.fire == nil {
			if ev != nil {
				t.Errorf("%s: fired %v", s.name, ev.Primitives)
			}
			continue
		}
		seq++
		if ev == nil {
			t.Fatalf("%s: no event, want %v (flagged %v, fired %v)", s.name, s.fire, r.Flagged, r.Fired)
		}
		want := attribution.MultiActorSuspected{
			EventID:         attribution.EventID(attribution.EventMultiActorSuspected, "id-1", seq),
			Sequence:        seq,
			IdentityUUID:    "id-1",
			AttackerUUID:    s.c.AttackerUUID,
			Primitives:      s.fire,
			EvidenceSummary: fmt.Sprintf("%d primitives flagged multi_actor", len(s.fire)),
			Confidence:      0.6,
			TS:              s.c.TS,
		}
		if fmt.Sprintf("%+v", *ev) != fmt.Sprintf("%+v", want) {
			t.Errorf("%s:\n got  %+v\n want %+v", s.name, *ev, want)
		}
		ev.Primitives[0] = "mutated"
		if slices.Contains(r.Flagged, "mutated") || slices.Contains(r.Fired, "mutated") {
			t.Errorf("%s: the event shares its primitives with the record", s.name)
		}
	}
	if r.Suspicions != seq {
		t.Errorf("suspicions %d, want %d", r.Suspicions, seq)
	}
}

// TestIdentityFlagPersisted: the dedupe survives a JSON round trip of the
// identity record (a restart), unlike upstream's in-memory one.
func TestIdentityFlagPersisted(t *testing.T) {
	th := attribution.DefaultThresholds()
	r := &attribution.IdentityRecord{IdentityUUID: "id-1"}
	r.Flag(change("p.a", "stable", attribution.StateMultiActor, 1), th)
	if r.Flag(change("p.b", "stable", attribution.StateMultiActor, 2), th) == nil {
		t.Fatal("no suspicion")
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	back := &attribution.IdentityRecord{IdentityUUID: "id-1"}
	if err := json.Unmarshal(b, back); err != nil {
		t.Fatal(err)
	}
	c := back.Clone()
	if ev := c.Flag(change("p.x", "", "stable", 3), th); ev != nil {
		t.Errorf("re-fired after a restart: %+v", ev)
	}
	if ev := back.Flag(change("p.c", "stable", attribution.StateMultiActor, 4), th); ev == nil || ev.Sequence != 2 {
		t.Errorf("after a restart the next suspicion is %+v, want sequence 2", ev)
	}
}

func TestTouches(t *testing.T) {
	cases := []struct {
		name string
		c    *attribution.StateChanged
		want bool
	}{
		{"nil", nil, false},
		{"first state", change("p.a", "", attribution.StateStable, 1), false},
		{"first state multi_actor", change("p.a", "", attribution.StateMultiActor, 1), true},
		{"into multi_actor", change("p.a", attribution.StateConflicted, attribution.StateMultiActor, 1), true},
		{"out of multi_actor", change("p.a", attribution.StateMultiActor, attribution.StateDrifting, 1), true},
		{"elsewhere", change("p.a", attribution.StateStable, attribution.StateDrifting, 1), false},
	}
	for _, tc := range cases {
		if got := attribution.Touches(tc.c); got != tc.want {
			t.Errorf("%s: Touches = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestStubIdentityID(t *testing.T) {
	a := attribution.StubIdentityID("att-c248")
	if a != attribution.StubIdentityID("att-c248") {
		t.Errorf("not deterministic")
	}
	if a == attribution.StubIdentityID("att-c249") {
		t.Errorf("two attackers share an identity")
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(a) {
		t.Errorf("%q is not a version 5 UUID", a)
	}
}

func TestErrorHelpers(t *testing.T) {
	inv := attribution.Invalidf("ts", "must be %s", "finite")
	wrapped := fmt.Errorf("message 3: %w", inv)
	cases := []struct {
		name  string
		err   error
		code  string
		field string
		text  string
	}{
		{"nil", nil, "", "", ""},
		{"invalid", inv, attribution.EINVALID, "ts", "ts: must be finite"},
		{"wrapped invalid", wrapped, attribution.EINVALID, "ts", "message 3: ts: must be finite"},
		{"conflict", fmt.Errorf("series x: %w", attribution.ErrVersionConflict), attribution.ECONFLICT, "", "series x: record changed since it was read"},
		{"plain", fmt.Errorf("boom"), attribution.EINTERNAL, "", "boom"},
		{"with cause", &attribution.Error{Code: attribution.ENOTFOUND, Message: "no such", Err: fmt.Errorf("cause")}, attribution.ENOTFOUND, "", "no such: cause"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := attribution.ErrorCode(tc.err); got != tc.code {
				t.Errorf("code %q, want %q", got, tc.code)
			}
			if got := attribution.ErrorField(tc.err); got != tc.field {
				t.Errorf("field %q, want %q", got, tc.field)
			}
			if tc.err != nil && tc.err.Error() != tc.text {
				t.Errorf("text %q, want %q", tc.err.Error(), tc.text)
			}
		})
	}
}
