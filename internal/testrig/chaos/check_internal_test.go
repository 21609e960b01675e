package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/config"
	"decnet-attribution/internal/testrig/devstack"
)

// perfectRun builds what a flawless run of stream leaves behind: every
// event of the replay delivered (some twice), the alerts the rule matches,
// the replay's records, the malformed messages in the dead-letter queue
// with their reasons, and the observations applied in send order.
func perfectRun(t *testing.T, stream *Stream, cfg config.Config) *observed {
	t.Helper()
	bodies := make([]string, len(stream.Messages))
	for i, m := range stream.Messages {
		bodies[i] = m.Body
	}
	ref, store, err := replay(context.Background(), bodies, cfg.Registry, cfg.Thresholds)
	if err != nil {
		t.Fatal(err)
	}
	o := &observed{records: ref.Records, identities: map[string]*attribution.IdentityRecord{}, journal: store.journal, written: journalObservations(store.journal)}
	o.applied = journalObservations(store.journal)
	for i, e := range ref.Events {
		b := devstack.BusEvent{ID: fmt.Sprint("bus-", i), Source: attribution.EventSource, DetailType: e.DetailType, Detail: e.Detail}
		o.events = append(o.events, b)
		if i%3 == 0 {
			o.events = append(o.events, b) // redelivered: same event_id
		}
		ev, err := decodeEvent(e.DetailType, e.Detail)
		if err != nil {
			t.Fatal(err)
		}
		if ev.matchesAlertRule() {
			o.alerts = append(o.alerts, b)
		}
		if ev.ms != nil {
			id := o.identity(ev.subject)
			id.Suspicions++
		}
	}
	for key := range ref.Records {
		o.identity(key.IdentityUUID)
	}
	if stream.clusterer != nil {
		o.identities = ref.Identities // the stored records, suspicions and rekeys counted
		o.attackers = map[string]*attribution.AttackerRecord{}
		for _, as := range stream.Membership() {
			for _, a := range as {
				if o.attackers[a], err = store.LoadAttacker(context.Background(), a); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	reported := map[string]bool{}
	for i, m := range stream.Messages {
		switch reason, ok := ref.Reports[m.EventID]; {
		case m.Kind == KindMalformed:
			err := Rejection(m.Body, cfg.Registry)
			o.dlq = append(o.dlq, DeadLetter{MessageID: fmt.Sprint("dl-", i), Body: m.Body, Field: orDash(attribution.ErrorField(err)), Reason: err.Error()})
		case ok && !reported[m.EventID]:
			reported[m.EventID] = true
			o.dlq = append(o.dlq, DeadLetter{MessageID: fmt.Sprint("dl-", i), Body: m.Body, Reason: reason})
		}
	}
	return o
}

func (o *observed) identity(id string) *attribution.IdentityRecord {
	if o.identities[id] == nil {
		o.identities[id] = &attribution.IdentityRecord{IdentityUUID: id}
	}
	return o.identities[id]
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func defaultConfig(t *testing.T) config.Config {
	t.Helper()
	cfg, err := config.FromEnv(func(k string) (string, bool) {
		v, ok := map[string]string{"IDENTITIES_TABLE": "i", "OBSERVATIONS_TABLE": "o", "STATES_TABLE": "s", "EVENT_BUS_NAME": "b"}[k]
		return v, ok
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestCheckCatchesEachViolation runs the checks on a flawless run (no
// violation) and on copies of it broken in one way each, which must show
// in the verdict that names it.
func TestCheckCatchesEachViolation(t *testing.T) {
	cfg := defaultConfig(t)
	stream := Generate(StreamConfig{Seed: 7, Observations: 120, Attackers: 5, Hot: 2, HotShare: 0.7, Duplicates: 0.1, Amendments: 5, Malformed: 4, ShuffleWindow: 10})
	sequential := Scenario{Name: "t", Pollers: 1, SendOrder: true, Stream: StreamConfig{Amendments: 5}}
	concurrent := Scenario{Name: "t", Pollers: 4}

	firstEvent := func(o *observed, detailType string) int {
		for i, e := range o.events {
			if e.DetailType == detailType {
				return i
			}
		}
		t.Fatalf("no %s event in the stream", detailType)
		return -1
	}
	editDetail := func(b devstack.BusEvent, edit func(map[string]any)) devstack.BusEvent {
		var d map[string]any
		if err := json.Unmarshal(b.Detail, &d); err != nil {
			t.Fatal(err)
		}
		edit(d)
		b.Detail = json.RawMessage(mustJSON(d))
		return b
	}
	dropID := func(o *observed, id string) {
		var kept []devstack.BusEvent
		for _, e := range o.events {
			if eventIDOf(e) != id {
				kept = append(kept, e)
			}
		}
		o.events = kept
		kept = nil
		for _, e := range o.alerts {
			if eventIDOf(e) != id {
				kept = append(kept, e)
			}
		}
		o.alerts = kept
	}
	tests := []struct {
		name   string
		sc     Scenario
		break_ func(o *observed)
		want   func(v Verdicts) bool
	}{
		{"flawless, sequential", sequential, func(*observed) {}, func(v Verdicts) bool { return v.OK() }},
		{"flawless, concurrent", concurrent, func(*observed) {}, func(v Verdicts) bool { return v.OK() }},
		{"a transition lost", concurrent, func(o *observed) {
			dropID(o, eventIDOf(o.events[firstEvent(o, attribution.EventStateChanged)]))
		}, func(v Verdicts) bool { return v.Lost > 0 }},
		{"the last transition of a series lost", sequential, func(o *observed) {
			last := o.events[len(o.events)-1]
			for i := len(o.events) - 1; i >= 0 && last.DetailType != attribution.EventStateChanged; i-- {
				last = o.events[i]
			}
			dropID(o, eventIDOf(last))
		}, func(v Verdicts) bool { return v.Lost > 0 }},
		{"a suspicion lost", concurrent, func(o *observed) {
			dropID(o, eventIDOf(o.events[firstEvent(o, attribution.EventMultiActorSuspected)]))
		}, func(v Verdicts) bool { return v.Lost > 0 }},
		{"a transition re-sent under a new event_id", concurrent, func(o *observed) {
			b := o.events[firstEvent(o, attribution.EventStateChanged)]
			o.events = append(o.events, editDetail(b, func(d map[string]any) { d["event_id"] = "0123456789abcdef0123456789abcdef" }))
		}, func(v Verdicts) bool { return v.DuplicateEventsWithNewID == 1 && v.UnexpectedEvents > 0 }},
		{"a redelivery with other content", concurrent, func(o *observed) {
			b := o.events[firstEvent(o, attribution.EventStateChanged)]
			o.events = append(o.events, editDetail(b, func(d map[string]any) { d["confidence"] = 0.123 }))
		}, func(v Verdicts) bool { return v.ConflictingDuplicates == 1 }},
		{"an event the replay does not have", sequential, func(o *observed) {
			b := o.events[firstEvent(o, attribution.EventStateChanged)]
			o.events[firstEvent(o, attribution.EventStateChanged)] = editDetail(b, func(d map[string]any) { d["current_value"] = "forged" })
		}, func(v Verdicts) bool { return v.UnexpectedEvents > 0 }},
		{"a chain that skips a state", concurrent, func(o *observed) {
			i := firstEvent(o, attribution.EventStateChanged)
			o.events[i] = editDetail(o.events[i], func(d map[string]any) { d["old_state"] = "stable" })
		}, func(v Verdicts) bool { return v.UnexpectedEvents > 0 }},
		{"an observation counted twice", concurrent, func(o *observed) {
			for _, r := range o.records {
				if r.Current != nil {
					r.Current.ObservationCount++
					return
				}
			}
		}, func(v Verdicts) bool { return v.DoubleCounted > 0 }},
		{"a stored state that differs", concurrent, func(o *observed) {
			for _, r := range o.records {
				if r.Current != nil && r.Current.State == attribution.StateStable {
					r.Current.CurrentValue = `"elsewhere"`
					return
				}
			}
		}, func(v Verdicts) bool { return v.StateMismatches > 0 }},
		{"an alert missing", concurrent, func(o *observed) { o.alerts = o.alerts[1:] }, func(v Verdicts) bool { return v.AlertMismatches > 0 }},
		{"an alert the rule does not match", concurrent, func(o *observed) {
			for _, e := range o.events {
				if ev, _ := decodeEvent(e.DetailType, e.Detail); !ev.matchesAlertRule() {
					o.alerts = append(o.alerts, e)
					return
				}
			}
		}, func(v Verdicts) bool { return v.AlertMismatches > 0 }},
		{"a malformed message missing from the DLQ", concurrent, func(o *observed) { o.dlq = o.dlq[1:] }, func(v Verdicts) bool { return v.DLQ == v.DLQWant-1 && !v.OK() }},
		{"a dead letter with another reason", concurrent, func(o *observed) { o.dlq[0].Reason = "something else" }, func(v Verdicts) bool { return v.DLQWithoutReason == 1 }},
		{"a redriven dead letter with its reason in the log", concurrent, func(o *observed) {
			err := Rejection(o.dlq[0].Body, cfg.Registry)
			o.logs = fmt.Sprintf(`{"level":"WARN","message":"rejected invalid message","message_id":%q,"field":%q,"reason":%q}`+"\n",
				o.dlq[0].MessageID, attribution.ErrorField(err), err.Error())
			o.dlq[0].Reason, o.dlq[0].Field = "", ""
		}, func(v Verdicts) bool { return v.OK() }},
		{"a redriven dead letter without a reason", concurrent, func(o *observed) { o.dlq[0].Reason, o.dlq[0].Field = "", "" }, func(v Verdicts) bool { return v.DLQWithoutReason == 1 }},
		{"a valid message in the DLQ", concurrent, func(o *observed) {
			o.dlq = append(o.dlq, DeadLetter{MessageID: "valid", Body: stream.Messages[0].Body})
		}, func(v Verdicts) bool { return v.Lost > 0 }},
		{"a commit the function saw and DynamoDB did not apply", sequential, func(o *observed) {
			o.journal = o.journal[:len(o.journal)-1]
			o.written = journalObservations(o.journal)
		}, func(v Verdicts) bool { return v.CommitLogMismatches == 1 }},
		{"commits applied in another order than the events say", concurrent, func(o *observed) { slices.Reverse(o.journal) },
			func(v Verdicts) bool { return v.Lost > 0 && v.UnexpectedEvents > 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if stream.Messages[0].Kind == KindMalformed {
				t.Fatal("the test needs a valid first message")
			}
			o := perfectRun(t, stream, cfg)
			tt.break_(o)
			v, err := check(context.Background(), tt.sc, stream, o, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(v) {
				t.Errorf("verdicts %+v\nproblems:\n%s", v, strings.Join(v.Problems, "\n"))
			}
		})
	}
}

// TestGenerateIsDeterministic checks a config gives one stream, with the
// figures it asks for.
func TestGenerateIsDeterministic(t *testing.T) {
	cfg := StreamConfig{Seed: 3, Observations: 500, Attackers: 10, Hot: 3, HotShare: 0.7, Duplicates: 0.1, Amendments: 5, Malformed: 7, Wrapped: 0.2, ShuffleWindow: 25, LateShare: 0.02}
	a, b := Generate(cfg), Generate(cfg)
	if len(a.Messages) != len(b.Messages) {
		t.Fatalf("two streams of one config: %d and %d messages", len(a.Messages), len(b.Messages))
	}
	for i := range a.Messages {
		if a.Messages[i] != b.Messages[i] {
			t.Fatalf("message %d differs between two generations", i)
		}
	}
	c := a.Counts()
	if c.Originals != 500 || c.Malformed != 7 || c.Amendments == 0 || c.Duplicates < 45 || c.Wrapped == 0 || c.Attackers != 10 {
		t.Errorf("counts %+v", c)
	}
	hot := 0
	for _, m := range a.Messages {
		if m.Kind == KindOriginal && strings.HasPrefix(m.Key.Attacker, "hot-") {
			hot++
		}
	}
	if share := float64(hot) / 500; share < 0.6 || share > 0.8 {
		t.Errorf("hot attackers draw %.2f of the observations, want about 0.7", share)
	}
	kinds := map[string]bool{}
	ref, err := Replay(context.Background(), bodiesOf(a), attribution.BuiltinRegistry(), attribution.DefaultThresholds())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ref.Records {
		kinds[r.Current.State] = true
	}
	for _, state := range []string{attribution.StateStable, attribution.StateDrifting, attribution.StateConflicted, attribution.StateMultiActor} {
		if !kinds[state] {
			t.Errorf("no series ends %s; the stream should exercise every state (ends: %v)", state, kinds)
		}
	}
	if ref.Rejected != 7 {
		t.Errorf("the replay rejects %d messages, want the 7 malformed", ref.Rejected)
	}
}

// TestCheckCatchesIdentityViolations runs the checks on a flawless run of a
// stream with identity events and on copies broken in one way each.
func TestCheckCatchesIdentityViolations(t *testing.T) {
	cfg := defaultConfig(t)
	stream := Generate(StreamConfig{Seed: 21, Observations: 150, Attackers: 8, Hot: 2, HotShare: 0.5, Duplicates: 0.1, Malformed: 2, ShuffleWindow: 15,
		Identities: IdentityConfig{Events: 40}})
	c := stream.Counts()
	for _, topic := range []string{attribution.TopicIdentityFormed, attribution.TopicIdentityLinked, attribution.TopicIdentityMerged, attribution.TopicIdentityUnmerged} {
		if c.IdentityEvents[topic] == 0 {
			t.Fatalf("the stream has no %s event: %+v", topic, c.IdentityEvents)
		}
	}
	if c.IdentityRepeats == 0 || stream.clusterer.longest < 2 {
		t.Fatalf("want repeats and a chain of two merges: repeats %d, longest chain %d", c.IdentityRepeats, stream.clusterer.longest)
	}
	concurrent := Scenario{Name: "t", Pollers: 4}
	canonicalSeries := func(o *observed) *attribution.SeriesRecord {
		for c, as := range stream.Membership() {
			for k, r := range o.records {
				if k.IdentityUUID == c && len(as) > 1 && r.Current != nil && r.Current.ObservationCount > 2 {
					return r
				}
			}
		}
		t.Fatal("no canonical series of several attackers")
		return nil
	}
	tests := []struct {
		name   string
		break_ func(o *observed)
		want   func(v Verdicts) bool
	}{
		{"flawless", func(*observed) {}, func(v Verdicts) bool { return v.OK() }},
		{"an observation lost across a merge", func(o *observed) {
			r := canonicalSeries(o)
			r.Current.ObservationCount--
		}, func(v Verdicts) bool { return v.Lost > 0 && v.UnionMismatches > 0 }},
		{"an observation counted twice across a merge", func(o *observed) {
			r := canonicalSeries(o)
			r.Current.ObservationCount++
		}, func(v Verdicts) bool { return v.DoubleCounted > 0 && v.UnionMismatches > 0 }},
		{"an attacker left on the identity it was linked away from", func(o *observed) {
			for c, as := range stream.Membership() {
				if c != attribution.StubIdentityID(as[0]) {
					o.attackers[as[0]].IdentityUUID = attribution.StubIdentityID(as[0])
					return
				}
			}
		}, func(v Verdicts) bool { return v.MembershipMismatches > 0 }},
		{"a rekeyed event lost", func(o *observed) {
			for _, e := range o.events {
				if e.DetailType == attribution.EventIdentityRekeyed {
					id := eventIDOf(e)
					o.events = slices.DeleteFunc(o.events, func(b devstack.BusEvent) bool { return eventIDOf(b) == id })
					return
				}
			}
		}, func(v Verdicts) bool { return v.Lost > 0 }},
		{"a membership change DynamoDB did not apply", func(o *observed) {
			for i := range o.journal {
				if o.journal[i].membership != nil {
					o.journal = slices.Delete(o.journal, i, i+1)
					return
				}
			}
		}, func(v Verdicts) bool { return v.StateMismatches > 0 }},
		{"an identity event in the DLQ for no reason the replay gives", func(o *observed) {
			for _, m := range stream.Messages {
				if m.Topic == attribution.TopicIdentityMerged {
					o.dlq = append(o.dlq, DeadLetter{MessageID: "merge", Body: m.Body, Reason: "gave up"})
					return
				}
			}
		}, func(v Verdicts) bool { return v.Lost > 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := perfectRun(t, stream, cfg)
			tt.break_(o)
			v, err := check(context.Background(), concurrent, stream, o, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(v) {
				t.Errorf("verdicts %+v\nproblems:\n%s", v, strings.Join(v.Problems, "\n"))
			}
		})
	}
}

// TestInCommitOrder: the observations of a transaction take the order the
// function applied them in; single writes, and a transaction no commit of
// the function explains, keep the journal's.
func TestInCommitOrder(t *testing.T) {
	obs := func(prim, ref string) *attribution.Observation {
		return &attribution.Observation{AttackerUUID: "att-1", Primitive: prim, EvidenceRef: ref, Value: attribution.Null}
	}
	a, b, c := obs("motor.input_modality", "r1"), obs("environmental.locale", "r2"), obs("motor.input_modality", "r3")
	d, e := obs("motor.input_modality", "r4"), obs("environmental.locale", "r5")
	journal := []applied{
		{observation: a, transaction: 1}, {observation: c, transaction: 1}, {observation: b, transaction: 1},
		{observation: d}, {observation: e},
		{observation: d, transaction: 2}, {observation: e, transaction: 2},
	}
	orders := [][]attribution.Observation{{*a, *b, *c}, {*e, *d}}
	var got []string
	for _, x := range inCommitOrder(journal, orders) {
		got = append(got, fmt.Sprint(x.observation.EvidenceRef, "@", x.transaction))
	}
	want := []string{"r1@1", "r2@1", "r3@1", "r4@0", "r5@0", "r5@2", "r4@2"}
	if !slices.Equal(got, want) {
		t.Errorf("journal in commit order: %v, want %v", got, want)
	}
}
