package attribution_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

func TestDecodeIdentityEvents(t *testing.T) {
	env := func(topic, payload string) string {
		return `{"v":1,"id":"e1","topic":"` + topic + `","type":"` + strings.TrimPrefix(topic, "identity.") + `","ts":1714054176.5,"payload":` + payload + `}`
	}
	stamp := attribution.Stamp{TS: 1714054176.5, ID: "e1"}
	good := []struct {
		name string
		body string
		want attribution.IdentityEvent
	}{
		{"formed", env("identity.formed", `{"identity_uuid":"I","observation_uuids":["b","a","b"]}`),
			attribution.IdentityEvent{Topic: attribution.TopicIdentityFormed, Stamp: stamp, Identity: "I", Attackers: []string{"a", "b"}}},
		{"linked", env("identity.observation.linked", `{"identity_uuid":"I","observation_uuid":"a"}`),
			attribution.IdentityEvent{Topic: attribution.TopicIdentityLinked, Stamp: stamp, Identity: "I", Attackers: []string{"a"}}},
		{"merged", env("identity.merged", `{"winner_uuid":"W","loser_uuid":"L"}`),
			attribution.IdentityEvent{Topic: attribution.TopicIdentityMerged, Stamp: stamp, Winner: "W", Loser: "L"}},
		{"unmerged", env("identity.unmerged", `{"resurrected_uuid":"L","former_winner_uuid":"W"}`),
			attribution.IdentityEvent{Topic: attribution.TopicIdentityUnmerged, Stamp: stamp, Winner: "W", Loser: "L"}},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			d, err := attribution.Decode([]byte(tc.body))
			if err != nil || d.Identity == nil {
				t.Fatalf("decode: %+v, %v", d, err)
			}
			if !reflect.DeepEqual(*d.Identity, tc.want) {
				t.Errorf("got %+v, want %+v", *d.Identity, tc.want)
			}
		})
	}
	if d, err := attribution.Decode([]byte(env("identity.campaign.assigned", `{"identity_uuid":"I","campaign_id":"c"}`))); err != nil || d.Ignored == "" {
		t.Errorf("campaign assignment: %+v, %v; want accepted and ignored", d, err)
	}
	bad := []struct {
		name, body, field, reason string
	}{
		{"unknown identity topic", env("identity.renamed", `{}`), "topic", "not an identity event this service reads"},
		{"type disagrees with topic", `{"v":1,"id":"e","topic":"identity.merged","type":"formed","ts":1,"payload":{}}`, "type", "does not match topic"},
		{"no id", `{"v":1,"topic":"identity.merged","ts":1,"payload":{"winner_uuid":"W","loser_uuid":"L"}}`, "id", "is required"},
		{"no ts", `{"v":1,"id":"e","topic":"identity.merged","payload":{"winner_uuid":"W","loser_uuid":"L"}}`, "ts", "orders identity events"},
		{"ts a string", `{"v":1,"id":"e","topic":"identity.merged","ts":"1","payload":{"winner_uuid":"W","loser_uuid":"L"}}`, "ts", "finite number"},
		{"payload not an object", env("identity.merged", `[1]`), "payload", "JSON object"},
		{"formed without identity", env("identity.formed", `{"observation_uuids":["a"]}`), "payload.identity_uuid", "is required"},
		{"formed without attackers", env("identity.formed", `{"identity_uuid":"I"}`), "payload.observation_uuids", "is required"},
		{"formed with no attacker", env("identity.formed", `{"identity_uuid":"I","observation_uuids":[]}`), "payload.observation_uuids", "at least one"},
		{"formed attackers not an array", env("identity.formed", `{"identity_uuid":"I","observation_uuids":"a"}`), "payload.observation_uuids", "must be an array"},
		{"formed attacker blank", env("identity.formed", `{"identity_uuid":"I","observation_uuids":["a"," "]}`), "payload.observation_uuids[1]", "must not be empty"},
		{"linked attacker a number", env("identity.observation.linked", `{"identity_uuid":"I","observation_uuid":7}`), "payload.observation_uuid", "must be a string"},
		{"merged without loser", env("identity.merged", `{"winner_uuid":"W"}`), "payload.loser_uuid", "is required"},
		{"merged into itself", env("identity.merged", `{"winner_uuid":"W","loser_uuid":"W"}`), "payload.loser_uuid", "cannot merge into itself"},
		{"unmerged without former winner", env("identity.unmerged", `{"resurrected_uuid":"L"}`), "payload.former_winner_uuid", "is required"},
		{"identity named like a record key", env("identity.merged", `{"winner_uuid":"#identity","loser_uuid":"L"}`), "payload.winner_uuid", "must not start with '#'"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := attribution.Decode([]byte(tc.body))
			if attribution.ErrorCode(err) != attribution.EINVALID || attribution.ErrorField(err) != tc.field || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("err = %v (field %q), want invalid %s: …%s…", err, attribution.ErrorField(err), tc.field, tc.reason)
			}
		})
	}
	if _, err := attribution.DecodeMessage([]byte(env("identity.merged", `{"winner_uuid":"W","loser_uuid":"L"}`))); attribution.ErrorCode(err) != attribution.EINVALID {
		t.Errorf("DecodeMessage of an identity event: %v, want invalid", err)
	}
}

// refusingBus refuses every event while down, and keeps what it takes.
type refusingBus struct {
	down     bool
	accepted []attribution.Event
	// hook, when set, runs once, at the next publish.
	hook func()
}

func (b *refusingBus) Publish(_ context.Context, events []attribution.Event) error {
	if h := b.hook; h != nil {
		b.hook = nil
		h()
	}
	if b.down {
		return errors.New("bus unavailable")
	}
	b.accepted = append(b.accepted, events...)
	return nil
}

// outboxRig is a processor over memstore whose bus can refuse everything.
type outboxRig struct {
	t     *testing.T
	store *memstore.Store
	bus   *refusingBus
	proc  *attribution.Processor
}

func newOutboxRig(t *testing.T) *outboxRig {
	r := &outboxRig{t: t, store: memstore.New(), bus: &refusingBus{}}
	r.proc = r.processor()
	return r
}

// processor returns a processor of its own over the rig's store and bus.
func (r *outboxRig) processor() *attribution.Processor {
	return &attribution.Processor{Store: r.store, Identities: r.store, Publisher: r.bus, Registry: mustTestRegistry(r.t),
		Thresholds: attribution.DefaultThresholds(), Logger: quietLogger(), Concurrency: 1}
}

func (r *outboxRig) process(body []byte) error { return r.processBy(r.proc, body) }

func (r *outboxRig) processBy(p *attribution.Processor, body []byte) error {
	return p.Process(context.Background(), []attribution.Message{{ID: "m", Body: body}})[0]
}

// must processes bodies that must succeed.
func (r *outboxRig) must(bodies ...[]byte) {
	r.t.Helper()
	for _, b := range bodies {
		if err := r.process(b); err != nil {
			r.t.Fatal(err)
		}
	}
}

// refused processes a body while the bus is down: the message must fail.
func (r *outboxRig) refused(body []byte) {
	r.t.Helper()
	r.bus.down = true
	defer func() { r.bus.down = false }()
	if err := r.process(body); err == nil {
		r.t.Fatal("the bus refused the change's events: the message must fail")
	}
}

func (r *outboxRig) observe(attacker string, n int) {
	r.t.Helper()
	for i := range n {
		s := spec{Attacker: attacker, Primitive: "motor.input_modality", Ref: fmt.Sprintf("%s-r%d", attacker, i), TS: float64(100 + i), Value: `"typed"`, Confidence: 0.9}
		r.must(s.body())
	}
}

// published counts how often the bus took the event.
func (r *outboxRig) published(id string) int {
	n := 0
	for _, e := range r.bus.accepted {
		if e.ID == id {
			n++
		}
	}
	return n
}

// nothingPending fails for any event still in an outbox.
func (r *outboxRig) nothingPending() {
	r.t.Helper()
	for id := range r.store.IdentityRecords() {
		n, err := r.store.LoadIdentity(context.Background(), id, true)
		if err != nil {
			r.t.Fatal(err)
		}
		if p := n.Pending(); len(p) > 0 {
			r.t.Errorf("identity %s still has %d events pending", id, len(p))
		}
	}
	for _, rec := range r.store.Records() {
		if p := rec.Pending(); len(p) > 0 {
			r.t.Errorf("series %s still has %d events pending", rec.Key, len(p))
		}
	}
}

// TestRedeliveredIdentityEventPublishesWhatItsChangeLeftPending: the bus
// refuses the events of a membership change (as after a crash between the
// commit and the publish); the redelivered event changes nothing and must
// publish them: the rekeyed event of the stub the attacker came from, and
// the transitions of the series recomputed at the end of the chain.
func TestRedeliveredIdentityEventPublishesWhatItsChangeLeftPending(t *testing.T) {
	r := newOutboxRig(t)
	r.observe("a1", 5)
	r.must(
		busEvent(attribution.TopicIdentityFormed, "e1", 200, `{"identity_uuid":"I2","observation_uuids":["a2"]}`),
		busEvent(attribution.TopicIdentityFormed, "e2", 201, `{"identity_uuid":"I1","observation_uuids":["a3"]}`),
		busEvent(attribution.TopicIdentityMerged, "e3", 202, `{"winner_uuid":"I1","loser_uuid":"I2"}`),
	)
	// a1 leaves its stub for I2, merged into I1: the stub is retired and
	// I1's series recomputed.
	linked := busEvent(attribution.TopicIdentityLinked, "e4", 203, `{"identity_uuid":"I2","observation_uuid":"a1"}`)
	r.bus.accepted = nil
	r.refused(linked)
	r.must(linked)
	got := map[string]bool{}
	for _, e := range r.bus.accepted {
		got[e.DetailType] = true
	}
	if !got[attribution.EventIdentityRekeyed] || !got[attribution.EventStateChanged] {
		t.Errorf("the redelivery published %v; want the rekeyed event and I1's transitions", wants(r.bus.accepted))
	}
	r.nothingPending()
}

// TestNextMovePublishesWhatThePreviousMoveLeftPending: the bus refuses the
// events of a1's first move (its stub retired into I1), and DECNET moves a1
// again before that event is delivered again; the second move publishes
// the stub's rekeyed event, which the late redelivery (a no-op, no longer
// a1's latest move) could not.
func TestNextMovePublishesWhatThePreviousMoveLeftPending(t *testing.T) {
	r := newOutboxRig(t)
	r.observe("a1", 1)
	r.refused(busEvent(attribution.TopicIdentityFormed, "e1", 200, `{"identity_uuid":"I1","observation_uuids":["a1"]}`))
	r.must(busEvent(attribution.TopicIdentityLinked, "e2", 201, `{"identity_uuid":"I2","observation_uuid":"a1"}`))
	stub := attribution.StubIdentityID("a1")
	n, err := r.store.LoadIdentity(context.Background(), stub, true)
	if err != nil {
		t.Fatal(err)
	}
	if n.Rekeys != 1 || len(n.Pending()) != 0 {
		t.Errorf("stub: %d rekeyed events, %d still pending after a1's next move", n.Rekeys, len(n.Pending()))
	}
	if got := r.published(attribution.EventID(attribution.EventIdentityRekeyed, stub, 1)); got != 1 {
		t.Errorf("the stub's rekeyed event was published %d times, want once", got)
	}
}

// TestMergeCountsTheLosersInlineObservations: a merge moves the loser's
// attackers to the winner, whose series are recomputed from their
// observation items; those the loser's records still hold inline (never
// written as items yet) are written first, so the union counts them.
func TestMergeCountsTheLosersInlineObservations(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	p := &attribution.Processor{Store: store, Identities: store, Publisher: &recorder{},
		Registry: attribution.BuiltinRegistry(), Thresholds: attribution.DefaultThresholds(), Logger: quietLogger()}
	event := func(id, topic string, ts float64, payload string) attribution.Message {
		body := fmt.Sprintf(`{"v":1,"id":%q,"topic":%q,"type":%q,"ts":%v,"payload":%s}`, id, topic, strings.TrimPrefix(topic, "identity."), ts, payload)
		return attribution.Message{ID: id, Body: []byte(body)}
	}
	obs := func(attacker, ref string, ts float64) attribution.Message {
		s := spec{Attacker: attacker, Primitive: "motor.input_modality", Ref: ref, TS: ts, Value: `"typed"`}
		return attribution.Message{ID: attacker + ref, Body: s.body()}
	}
	batches := [][]attribution.Message{
		{event("e1", attribution.TopicIdentityFormed, 1, `{"identity_uuid":"W","observation_uuids":["att-w"]}`),
			event("e2", attribution.TopicIdentityFormed, 2, `{"identity_uuid":"L","observation_uuids":["att-l"]}`)},
		{obs("att-w", "w1", 10), obs("att-l", "l1", 11), obs("att-l", "l2", 12)},
		{event("e3", attribution.TopicIdentityMerged, 20, `{"winner_uuid":"W","loser_uuid":"L"}`)},
	}
	for i, b := range batches {
		for j, err := range p.Process(ctx, b) {
			if err != nil {
				t.Fatalf("batch %d, message %d: %v", i, j, err)
			}
		}
	}
	loser, err := store.LoadSeries(ctx, "L", []string{"motor.input_modality"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if rec := loser["motor.input_modality"]; rec == nil || len(rec.Inline) != 0 {
		t.Fatalf("the loser's record still holds observations inline: %+v", rec)
	}
	winner, err := store.LoadSeries(ctx, "W", []string{"motor.input_modality"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if rec := winner["motor.input_modality"]; rec == nil || rec.Current == nil || rec.Current.ObservationCount != 3 {
		t.Fatalf("the winner's series counts %+v, want the 3 observations of both attackers", rec)
	}
}

// TestMovesRefusedTwiceLoseNothing: the bus refuses the events of two moves
// of a1 in a row, then both events are delivered again, the later first.
// Each redelivery changes nothing; together they must publish the stub's
// rekeying as well as I1's, although a1's record by then names only the
// second move.
func TestMovesRefusedTwiceLoseNothing(t *testing.T) {
	r := newOutboxRig(t)
	r.observe("a1", 2)
	first := busEvent(attribution.TopicIdentityFormed, "e1", 200, `{"identity_uuid":"I1","observation_uuids":["a1"]}`)
	second := busEvent(attribution.TopicIdentityLinked, "e2", 201, `{"identity_uuid":"I2","observation_uuid":"a1"}`)
	r.refused(first)
	r.refused(second)
	r.must(second, first)
	for _, id := range []string{attribution.StubIdentityID("a1"), "I1"} {
		if got := r.published(attribution.EventID(attribution.EventIdentityRekeyed, id, 1)); got != 1 {
			t.Errorf("the rekeyed event of %s was published %d times, want once", id, got)
		}
	}
	r.nothingPending()
}

// TestRedeliveredMergePublishesTheRetiredFormerWinner: I1 owns no attacker
// of its own and holds I2's by a merge; merging I2 into I3 instead retires
// I1, and the bus refuses that change's events. The redelivered merge
// changes nothing and must publish I1's rekeying, though I1 is no longer
// on the chain of either identity the event names.
func TestRedeliveredMergePublishesTheRetiredFormerWinner(t *testing.T) {
	r := newOutboxRig(t)
	r.observe("a1", 3)
	r.observe("a2", 3)
	r.must(
		busEvent(attribution.TopicIdentityFormed, "e1", 200, `{"identity_uuid":"I2","observation_uuids":["a1"]}`),
		busEvent(attribution.TopicIdentityFormed, "e2", 201, `{"identity_uuid":"I3","observation_uuids":["a2"]}`),
		busEvent(attribution.TopicIdentityMerged, "e3", 202, `{"winner_uuid":"I1","loser_uuid":"I2"}`),
	)
	merge := busEvent(attribution.TopicIdentityMerged, "e4", 203, `{"winner_uuid":"I3","loser_uuid":"I2"}`)
	r.refused(merge)
	r.must(merge)
	n, err := r.store.LoadIdentity(context.Background(), "I1", true)
	if err != nil {
		t.Fatal(err)
	}
	if n.Rekeys != 1 || n.Into != "I3" {
		t.Fatalf("I1: %d rekeyed events into %q; want 1 into I3", n.Rekeys, n.Into)
	}
	if got := r.published(attribution.EventID(attribution.EventIdentityRekeyed, "I1", 1)); got != 1 {
		t.Errorf("I1's rekeyed event was published %d times, want once", got)
	}
	r.nothingPending()
}

// TestChangeCommittedDuringTheFlushWins: while an unmerge publishes what
// the loser's previous change left pending, a newer unmerge of the same
// loser commits. The older one must then change nothing, not set the
// loser's stamp back (which would let the stale merge apply).
func TestChangeCommittedDuringTheFlushWins(t *testing.T) {
	r := newOutboxRig(t)
	r.observe("a1", 1)
	r.must(
		busEvent(attribution.TopicIdentityFormed, "e1", 200, `{"identity_uuid":"L","observation_uuids":["a1"]}`),
		busEvent(attribution.TopicIdentityFormed, "e2", 201, `{"identity_uuid":"W","observation_uuids":["a2"]}`),
	)
	r.refused(busEvent(attribution.TopicIdentityMerged, "e3", 202, `{"winner_uuid":"W","loser_uuid":"L"}`))
	newer := busEvent(attribution.TopicIdentityUnmerged, "e5", 210, `{"former_winner_uuid":"W","resurrected_uuid":"L"}`)
	other := r.processor()
	r.bus.hook = func() {
		if err := r.processBy(other, newer); err != nil {
			t.Errorf("the newer unmerge: %v", err)
		}
	}
	r.must(busEvent(attribution.TopicIdentityUnmerged, "e4", 205, `{"former_winner_uuid":"W","resurrected_uuid":"L"}`))
	n, err := r.store.LoadIdentity(context.Background(), "L", true)
	if err != nil {
		t.Fatal(err)
	}
	if n.ParentStamp.ID != "e5" || n.Parent != "" {
		t.Errorf("L: parent %q, stamp %+v; want no parent, stamped by e5", n.Parent, n.ParentStamp)
	}
}

// lostMembershipReply commits every membership change, and reports the
// first one lost while lose is set, as when the commit's response is
// dropped.
type lostMembershipReply struct {
	*memstore.Store
	lose bool
}

func (s *lostMembershipReply) CommitMembership(ctx context.Context, c *attribution.MembershipCommit) error {
	if err := s.Store.CommitMembership(ctx, c); err != nil {
		return err
	}
	if s.lose {
		s.lose = false
		return errors.New("commit membership: connection reset by peer (outcome unknown)")
	}
	return nil
}

// TestRedeliveredUnmergeReportsAgain: an unmerge of a merge not seen is
// applied and reported; when the commit's response is lost, the redelivery
// changes nothing and must still report it, while the redelivery of an
// unmerge that found its merge reports nothing.
func TestRedeliveredUnmergeReportsAgain(t *testing.T) {
	r := newOutboxRig(t)
	store := &lostMembershipReply{Store: r.store}
	r.proc.Store = store
	r.must(
		busEvent(attribution.TopicIdentityFormed, "e1", 200, `{"identity_uuid":"I1","observation_uuids":["a1"]}`),
		busEvent(attribution.TopicIdentityFormed, "e2", 201, `{"identity_uuid":"I2","observation_uuids":["a2"]}`),
	)
	early := busEvent(attribution.TopicIdentityUnmerged, "e3", 203, `{"resurrected_uuid":"I2","former_winner_uuid":"I1"}`)
	store.lose = true
	if err := r.process(early); err == nil || attribution.ErrorCode(err) == attribution.EINVALID {
		t.Fatalf("first delivery, response lost: %v; want a retryable error", err)
	}
	for range 2 {
		err := r.process(early)
		if attribution.ErrorCode(err) != attribution.EINVALID || attribution.ErrorField(err) != "payload.resurrected_uuid" || !strings.Contains(err.Error(), "no merge of I2 into I1 has been seen") {
			t.Fatalf("redelivered unmerge of a merge not seen: %v; want its report", err)
		}
	}
	// The merge arrives late: it changes nothing (the unmerge is newer).
	r.must(busEvent(attribution.TopicIdentityMerged, "e4", 202, `{"winner_uuid":"I1","loser_uuid":"I2"}`))
	// A newer merge and its unmerge are applied; their redeliveries report
	// nothing, and the loser no longer keeps the old report.
	merge := busEvent(attribution.TopicIdentityMerged, "e5", 204, `{"winner_uuid":"I1","loser_uuid":"I2"}`)
	unmerge := busEvent(attribution.TopicIdentityUnmerged, "e6", 205, `{"resurrected_uuid":"I2","former_winner_uuid":"I1"}`)
	r.must(merge, merge)
	store.lose = true
	if err := r.process(unmerge); err == nil || attribution.ErrorCode(err) == attribution.EINVALID {
		t.Fatalf("unmerge, response lost: %v; want a retryable error", err)
	}
	r.must(unmerge)
	if n, err := r.store.LoadIdentity(context.Background(), "I2", true); err != nil || n.Report != nil {
		t.Fatalf("I2 after a valid unmerge keeps report %+v (%v)", n.Report, err)
	}
}
