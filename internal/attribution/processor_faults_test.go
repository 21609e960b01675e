package attribution_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

// conflictStore fails every few commits with a version conflict, as if
// another writer had got there first, without writing anything.
type conflictStore struct {
	*memstore.Store
	every    int
	mu       sync.Mutex
	commits  int
	injected int
}

func (s *conflictStore) Commit(ctx context.Context, c *attribution.Commit) error {
	s.mu.Lock()
	s.commits++
	inject := s.every == 1 || s.commits%s.every == 1
	if inject {
		s.injected++
	}
	s.mu.Unlock()
	if inject {
		return fmt.Errorf("commit: %w", attribution.ErrVersionConflict)
	}
	return s.Store.Commit(ctx, c)
}

// lostResponseStore writes every commit but reports every few of them as
// failed, as when the response of a successful write is lost.
type lostResponseStore struct {
	*memstore.Store
	every int
	mu    sync.Mutex
	ok    int
	lost  int
}

func (s *lostResponseStore) Commit(ctx context.Context, c *attribution.Commit) error {
	if err := s.Store.Commit(ctx, c); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ok++
	if s.ok%s.every == 0 {
		s.lost++
		return errors.New("commit: connection reset by peer (outcome unknown)")
	}
	return nil
}

func faultStream(t *testing.T, seed uint64, amend float64) [][]byte {
	t.Helper()
	reg := mustTestRegistry(t)
	rng := rand.New(rand.NewPCG(seed, 23))
	return genStream(rng, reg, streamOpts{
		Attackers:  2,
		MaxLen:     6 + rng.IntN(10),
		Redeliver:  0.1,
		Amend:      amend,
		Primitives: slices.Concat(catPrimitives, numPrimitives, hashPrimitives[:1]),
		Shuffle:    1000,
	})
}

// TestProcessorVersionConflicts injects version conflicts on every third
// commit: the processor must re-read and retry, and the outcome must be
// that of a clean run.
func TestProcessorVersionConflicts(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	for _, mode := range runModes[:2] {
		for seed := range uint64(2) {
			t.Run(fmt.Sprintf("%s/stream%d", mode.name, seed), func(t *testing.T) {
				bodies := faultStream(t, seed, 0.05)
				want := mustOracle(t, reg, th, bodies)
				store := &conflictStore{Store: memstore.New(), every: 3}
				pub := &recorder{}
				metrics := &countingMetrics{}
				p := newProcessor(store, pub, reg, th)
				p.Metrics = metrics
				rng := rand.New(rand.NewPCG(seed, 5))
				msgs := messages(bodies)
				for i := 0; i < len(msgs); {
					n := 1
					if mode.batch {
						n = min(len(msgs)-i, 1+rng.IntN(100))
					}
					for j, err := range p.Process(context.Background(), msgs[i:i+n]) {
						if err != nil {
							t.Fatalf("message %d: %v", i+j, err)
						}
					}
					i += n
				}
				if store.injected == 0 || metrics.get(attribution.MetricVersionConflicts) != store.injected {
					t.Fatalf("injected %d conflicts, the processor counted %d", store.injected, metrics.get(attribution.MetricVersionConflicts))
				}
				diffEvents(t, mode.name, bySeries(t, pub.events()), want.events)
				checkRecords(t, mode.name, store.Store, want)
				// Retried plans must not count their events again.
				transitions, suspicions := 0, 0
				for _, evs := range want.events {
					for _, e := range evs {
						switch e.DetailType {
						case attribution.EventStateChanged:
							transitions++
						case attribution.EventMultiActorSuspected:
							suspicions++
						}
					}
				}
				if got := metrics.get(attribution.MetricTransitions); got != transitions {
					t.Errorf("Transitions metric %d, want the %d stored", got, transitions)
				}
				if got := metrics.get(attribution.MetricSuspicions); got != suspicions {
					t.Errorf("MultiActorSuspected metric %d, want the %d stored", got, suspicions)
				}
			})
		}
	}
}

// TestProcessorGivesUpOnConflicts checks that endless conflicts end in a
// retryable error for the message, not a loop, and that nothing is written.
func TestProcessorGivesUpOnConflicts(t *testing.T) {
	reg := mustTestRegistry(t)
	store := &conflictStore{Store: memstore.New(), every: 1} // every commit conflicts
	p := newProcessor(store, &recorder{}, reg, attribution.DefaultThresholds())
	p.MaxConflicts = 3
	body := spec{Attacker: "att-1", Primitive: "motor.input_modality", Ref: "r1", TS: 1, Value: `"typed"`}.body()
	err := p.Process(context.Background(), messages([][]byte{body}))[0]
	if err == nil || attribution.ErrorCode(err) != attribution.ECONFLICT || !errors.Is(err, attribution.ErrVersionConflict) {
		t.Fatalf("got %v (code %q), want a conflict error", err, attribution.ErrorCode(err))
	}
	if store.commits != 4 {
		t.Errorf("%d commit attempts, want 1 + MaxConflicts = 4", store.commits)
	}
	if n := len(store.Records()); n != 0 {
		t.Errorf("%d records stored", n)
	}
}

// TestProcessorLostCommitResponse reports some successful commits as
// failed. The messages concerned fail and are redelivered (to the same
// warm processor, or to a new one as after a restart); the redelivery
// finds them stored and must still publish the events the lost commit
// stored with them, before it reports success. The outcome must be that
// of a clean run: the same events, no observation counted twice.
func TestProcessorLostCommitResponse(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	cases := []struct {
		name  string
		batch bool
		cold  bool // redeliver to a new processor
	}{
		{"warm/single", false, false},
		{"warm/batched", true, false},
		{"cold/single", false, true},
		{"cold/batched", true, true},
	}
	for _, tc := range cases {
		for seed := range uint64(2) {
			t.Run(fmt.Sprintf("%s/stream%d", tc.name, seed), func(t *testing.T) {
				bodies := faultStream(t, 10+seed, 0.05)
				want := mustOracle(t, reg, th, bodies)
				store := &lostResponseStore{Store: memstore.New(), every: 4}
				pub := &recorder{}
				p := newProcessor(store, pub, reg, th)
				rng := rand.New(rand.NewPCG(seed, 6))
				msgs := messages(bodies)
				carried := want.carriedBy(t, msgs)
				for i := 0; i < len(msgs); {
					n := 1
					if tc.batch {
						n = min(len(msgs)-i, 1+rng.IntN(100))
					}
					batch := msgs[i : i+n]
					for attempt := 0; len(batch) > 0; attempt++ {
						if attempt > 6 {
							t.Fatalf("messages %d..: still failing after %d deliveries", i, attempt)
						}
						var again []attribution.Message
						for j, err := range p.Process(context.Background(), batch) {
							if err != nil {
								if attribution.ErrorCode(err) == attribution.EINVALID {
									t.Fatalf("message %s: %v", batch[j].ID, err)
								}
								again = append(again, batch[j])
								continue
							}
							if missing := notPublished(pub.events(), carried[batch[j].ID]); len(missing) > 0 {
								t.Fatalf("message %s (delivery %d) succeeded, yet the events of its observation %v were never published", batch[j].ID, attempt+1, missing)
							}
						}
						if len(again) > 0 && tc.cold {
							p = newProcessor(store, pub, reg, th)
						}
						batch = again
					}
					i += n
				}
				if store.lost == 0 {
					t.Fatalf("no commit response was lost")
				}
				diffEvents(t, tc.name, bySeries(t, pub.events()), want.events)
				checkRecords(t, tc.name, store.Store, want)
			})
		}
	}
}

// TestProcessorConcurrentWriters runs two processors, with their own
// caches, over one store at once, as two Lambda instances would: real
// version conflicts. Without amendments the final states do not depend on
// order: each must be Merge over the series, with every observation
// counted once. Both writers publish the events of the observations they
// meet, so an event may go out twice (always as an exact copy) and out of
// order; by sequence, each series' events must form one unbroken chain
// with one event per transition the record made.
func TestProcessorConcurrentWriters(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	for seed := range uint64(2) {
		t.Run(fmt.Sprintf("stream%d", seed), func(t *testing.T) {
			bodies := faultStream(t, 20+seed, 0)
			want := mustOracle(t, reg, th, bodies)
			store := memstore.New()
			pub := &recorder{}
			metrics := &countingMetrics{}
			msgs := messages(bodies)
			var wg sync.WaitGroup
			for w := range 2 {
				p := newProcessor(store, pub, reg, th)
				p.Metrics = metrics
				rng := rand.New(rand.NewPCG(seed, uint64(w)))
				// Each writer takes every message, in its own order and
				// batches.
				msgs := slices.Clone(msgs)
				if w == 1 {
					rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < len(msgs); {
						n := min(len(msgs)-i, 1+rng.IntN(8))
						batch := msgs[i : i+n]
						for attempt := 0; len(batch) > 0 && attempt < 20; attempt++ {
							var again []attribution.Message
							for j, err := range p.Process(context.Background(), batch) {
								if err != nil {
									again = append(again, batch[j])
								}
							}
							batch = again
						}
						if len(batch) > 0 {
							t.Errorf("writer %d: messages %d..%d keep failing", w, i, i+n)
							return
						}
						i += n
					}
				}()
			}
			wg.Wait()
			checkOrderFreeOutcome(t, "concurrent", store, want, pub.events(), th)
			t.Logf("%d version conflicts", metrics.get(attribution.MetricVersionConflicts))
		})
	}
}

// flakyPublisher fails some calls, never two in a row, in one of three
// ways: a retryable rejection of a suffix of the events (the prefix is
// accepted), a transport error before anything was accepted, or a
// transport error after everything was accepted.
type flakyPublisher struct {
	mu       sync.Mutex
	mode     string
	rng      *rand.Rand
	failed   bool // the last call failed
	accepted []recorded
	log      []publishCall
	details  map[string]string // every detail ever offered, by ID
	failures int
}

// publishCall is one Publish call as the processor saw it: what it
// offered, and which events it must take as not accepted (all of them
// after a transport error, whatever the bus did).
type publishCall struct {
	offered []attribution.Event
	refused map[string]bool
}

func (f *flakyPublisher) Publish(_ context.Context, events []attribution.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	call := publishCall{offered: slices.Clone(events), refused: make(map[string]bool)}
	defer func() { f.log = append(f.log, call) }()
	if f.details == nil {
		f.details = make(map[string]string)
	}
	for _, e := range events {
		if d, ok := f.details[e.ID]; ok && d != string(e.Detail) {
			f.failures = -1 << 30 // an ID reused with another detail; reported by the test
		}
		f.details[e.ID] = string(e.Detail)
	}
	accept := func(es []attribution.Event) {
		for _, e := range es {
			f.accepted = append(f.accepted, recorded{Call: len(f.log) + 1, Event: e})
		}
	}
	refuse := func(es []attribution.Event) {
		for _, e := range es {
			call.refused[e.ID] = true
		}
	}
	if f.failed || f.rng.IntN(3) != 0 {
		f.failed = false
		accept(events)
		return nil
	}
	f.failed = true
	f.failures++
	switch f.mode {
	case "suffix":
		k := f.rng.IntN(len(events))
		accept(events[:k])
		refuse(events[k:])
		perr := &attribution.PublishError{}
		for _, e := range events[k:] {
			perr.Failed = append(perr.Failed, attribution.FailedEvent{Event: e, Code: "ThrottlingException", Message: "Rate exceeded", Retryable: true})
		}
		return perr
	case "unsent":
		refuse(events)
		return errors.New("put events: dial tcp: connection refused")
	default: // "sent": the bus took them, the response was lost
		accept(events)
		refuse(events)
		return errors.New("put events: read: connection reset by peer")
	}
}

func (f *flakyPublisher) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.log)
}

// since returns the calls after the first n.
func (f *flakyPublisher) since(n int) []publishCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log[n:])
}

func offeredIn(calls []publishCall) []attribution.Event {
	var out []attribution.Event
	for _, c := range calls {
		out = append(out, c.offered...)
	}
	return out
}

// checkFailedExactly checks that each message of a batch failed exactly
// when the bus did not take an event its observation carries, and then
// with an error worth retrying.
func checkFailedExactly(tb testing.TB, batch []attribution.Message, errs []error, calls []publishCall, carried map[string][]wantEvent) {
	tb.Helper()
	// A message fails exactly when the bus did not take an event its
	// series owed (a state change of the series; a suspicion raised in any
	// series of the identity may block the one that carried it).
	blocked := make(map[attribution.SeriesKey]bool)
	suspected := make(map[string]bool)
	for _, c := range calls {
		for _, e := range c.offered {
			if !c.refused[e.ID] {
				continue
			}
			if e.DetailType == attribution.EventStateChanged {
				blocked[seriesOfEvent(tb, e)] = true
			} else {
				suspected[identityOfEvent(tb, e)] = true
			}
		}
	}
	for j, m := range batch {
		key := seriesOfMessage(tb, m)
		switch err := errs[j]; {
		case err == nil && blocked[key]:
			tb.Fatalf("message %s succeeded, yet the bus did not take events of its series %s", m.ID, key)
		case err != nil && !blocked[key] && !suspected[key.IdentityUUID]:
			tb.Fatalf("message %s failed (%v), yet the bus took all its series owed", m.ID, err)
		case attribution.ErrorCode(err) == attribution.EINVALID:
			tb.Fatalf("message %s: %v, not worth retrying", m.ID, err)
		}
	}
}

// seriesOfMessage is the series an observation message belongs to, its
// attacker on its stub identity.
func seriesOfMessage(tb testing.TB, m attribution.Message) attribution.SeriesKey {
	tb.Helper()
	d, err := attribution.Decode(m.Body)
	if err != nil || d.Identity != nil || d.Ignored != "" {
		tb.Fatalf("message %s: not an observation (%v)", m.ID, err)
	}
	return attribution.SeriesKey{IdentityUUID: attribution.StubIdentityID(d.Observation.AttackerUUID), Primitive: d.Observation.Primitive}
}

func identityOfEvent(tb testing.TB, e attribution.Event) string {
	tb.Helper()
	var d struct {
		IdentityUUID string `json:"identity_uuid"`
	}
	if err := json.Unmarshal(e.Detail, &d); err != nil {
		tb.Fatalf("event %s: %v", e.ID, err)
	}
	return d.IdentityUUID
}

// checkAcceptedOracle checks that the bus took every event of the clean
// run at least once and nothing else: a repeat is an exact copy.
func checkAcceptedOracle(tb testing.TB, accepted []recorded, want *oracle) {
	tb.Helper()
	wantIDs := want.byID()
	got := make(map[string]bool)
	for _, r := range accepted {
		if w, ok := wantIDs[r.Event.ID]; !ok || w != asWant(r.Event) {
			tb.Errorf("published %v, not an event of the clean run", asWant(r.Event))
		}
		got[r.Event.ID] = true
	}
	for id, w := range wantIDs {
		if !got[id] {
			tb.Errorf("event %v never published", w)
		}
	}
}

// TestProcessorPublishFailures makes the bus fail now and then, one
// message per call. Each call must offer exactly the events the message's
// observation carries (those it caused, or for a redelivered message
// those stored with its observation), in order. The message fails exactly
// when the bus did not take one of them; its redelivery (the bus works
// this time) offers the same events again, same IDs, same details. In the
// end every event of a clean run was accepted, none is new, and, the
// redelivery coming before the next message, each series' events were
// first accepted in sequence order.
func TestProcessorPublishFailures(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	for _, mode := range []string{"suffix", "unsent", "sent"} {
		for seed := range uint64(2) {
			t.Run(fmt.Sprintf("%s/stream%d", mode, seed), func(t *testing.T) {
				bodies := faultStream(t, 30+seed, 0.05)
				want := mustOracle(t, reg, th, bodies)
				store := memstore.New()
				pub := &flakyPublisher{mode: mode, rng: rand.New(rand.NewPCG(seed, 8))}
				p := newProcessor(store, pub, reg, th)
				msgs := messages(bodies)
				carried := want.carriedBy(t, msgs)
				// deliver processes m and checks the one call it must make.
				deliver := func(m attribution.Message, what string) error {
					before := pub.callCount()
					err := p.Process(context.Background(), []attribution.Message{m})[0]
					calls := pub.since(before)
					if len(calls) > 1 {
						t.Fatalf("%s %s: %d publish calls, want at most 1", what, m.ID, len(calls))
					}
					checkOffered(t, what+" "+m.ID, offeredIn(calls), []attribution.Message{m}, carried)
					checkFailedExactly(t, []attribution.Message{m}, []error{err}, calls, carried)
					return err
				}
				failed := 0
				for _, m := range msgs {
					if deliver(m, "message") == nil {
						continue
					}
					failed++
					// Redelivery: the bus works this time.
					if err := deliver(m, "redelivered message"); err != nil {
						t.Fatalf("message %s, redelivered: %v", m.ID, err)
					}
				}
				if failed == 0 || pub.failures <= 0 {
					t.Fatalf("%d messages failed, failures = %d: none injected, or an event ID came back with another detail", failed, pub.failures)
				}
				checkAcceptedOracle(t, pub.accepted, want)
				stateChangedOrder(t, firstDeliveries(t, pub.accepted), want)
				checkRecords(t, mode, store, want)
			})
		}
	}
}

// stateChangedOrder checks that each series' state_changed events were
// first accepted in sequence order.
func stateChangedOrder(tb testing.TB, firsts []recorded, want *oracle) {
	tb.Helper()
	got := make(map[attribution.SeriesKey][]string)
	for k, list := range bySeriesStateChanged(tb, firsts) {
		got[k] = list
	}
	for k, list := range want.events {
		var ids []string
		for _, e := range list {
			if e.DetailType == attribution.EventStateChanged {
				ids = append(ids, e.ID)
			}
		}
		if !slices.Equal(got[k], ids) {
			tb.Errorf("%s: state_changed accepted in the order %v, want %v", k, got[k], ids)
		}
	}
}

func bySeriesStateChanged(tb testing.TB, events []recorded) map[attribution.SeriesKey][]string {
	tb.Helper()
	out := make(map[attribution.SeriesKey][]string)
	for _, r := range events {
		if r.Event.DetailType != attribution.EventStateChanged {
			continue
		}
		k := seriesOfEvent(tb, r.Event)
		out[k] = append(out[k], r.Event.ID)
	}
	return out
}

// TestProcessorPublishFailuresBatched requeues the messages of failed
// batches behind the rest of the queue, as SQS does. Every call must offer
// exactly the events the observations of its batch carry, each once; a
// message fails exactly when the bus did not take one of its events, and
// whatever the order of redelivery, every event of a clean run is
// accepted in the end and none is new.
func TestProcessorPublishFailuresBatched(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	for seed := range uint64(2) {
		t.Run(fmt.Sprintf("stream%d", seed), func(t *testing.T) {
			bodies := faultStream(t, 40+seed, 0) // redelivery reorders: no amendments
			want := mustOracle(t, reg, th, bodies)
			store := memstore.New()
			pub := &flakyPublisher{mode: "suffix", rng: rand.New(rand.NewPCG(seed, 9))}
			p := newProcessor(store, pub, reg, th)
			rng := rand.New(rand.NewPCG(seed, 10))
			queue := messages(bodies)
			// Only publishing fails, so every observation is stored on its
			// first delivery, in stream order: what each message carries is
			// the oracle's, whenever it is redelivered.
			carried := want.carriedBy(t, queue)
			failed := 0
			for rounds := 0; len(queue) > 0; rounds++ {
				if rounds > 10*len(bodies) {
					t.Fatalf("queue never drains: %d messages left", len(queue))
				}
				n := min(len(queue), 1+rng.IntN(20))
				batch := queue[:n]
				queue = queue[n:]
				before := pub.callCount()
				errs := p.Process(context.Background(), batch)
				calls := pub.since(before)
				checkOffered(t, fmt.Sprintf("round %d", rounds), offeredIn(calls), batch, carried)
				checkFailedExactly(t, batch, errs, calls, carried)
				for j, err := range errs {
					if err != nil {
						failed++
						queue = append(queue, batch[j])
					}
				}
			}
			if failed == 0 {
				t.Fatalf("no message failed")
			}
			checkAcceptedOracle(t, pub.accepted, want)
			checkRecords(t, "batched", store, want)
		})
	}
}

// permanentPublisher rejects some events for good.
type permanentPublisher struct {
	mu       sync.Mutex
	reject   func(attribution.Event) bool
	accepted []recorded
	offered  []attribution.Event // every event offered, in order
	calls    int
}

func (p *permanentPublisher) Publish(_ context.Context, events []attribution.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	perr := &attribution.PublishError{}
	for _, e := range events {
		p.offered = append(p.offered, e)
		if p.reject(e) {
			perr.Failed = append(perr.Failed, attribution.FailedEvent{Event: e, Code: "ValidationException", Message: "detail too large", Retryable: false})
			continue
		}
		p.accepted = append(p.accepted, recorded{Call: p.calls, Event: e})
	}
	if len(perr.Failed) > 0 {
		return perr
	}
	return nil
}

// TestProcessorPublishPermanentFailure checks that an event the bus
// rejects for good is logged and dropped: the message does not fail for
// it and the events after it still go out. A delivery of the whole stream
// offers each event its observations carry once; delivering the stream
// again offers them once more (the bus rejects the same ones again) and
// still fails no message.
func TestProcessorPublishPermanentFailure(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	bodies := faultStream(t, 50, 0.05)
	// The oracle of both deliveries: an amendment delivered again may
	// amend again.
	want := mustOracle(t, reg, th, slices.Concat(bodies, bodies))
	store := memstore.New()
	pub := &permanentPublisher{reject: func(e attribution.Event) bool { return e.ID[0] < '4' }}
	metrics := &countingMetrics{}
	p := newProcessor(store, pub, reg, th)
	p.Metrics = metrics
	msgs := messages(bodies)
	rejected := 0
	for round, name := range []string{"delivery", "redelivery"} {
		carried := make(map[string][]wantEvent)
		for i, m := range msgs {
			carried[m.ID] = want.carried[round*len(msgs)+i]
		}
		offered, accepted := len(pub.offered), len(pub.accepted)
		for i, err := range p.Process(context.Background(), msgs) {
			if err != nil {
				t.Fatalf("%s: message %d: %v", name, i, err)
			}
		}
		checkOffered(t, name, pub.offered[offered:], msgs, carried)
		took := make(map[wantEvent]bool)
		for _, r := range pub.accepted[accepted:] {
			took[asWant(r.Event)] = true
		}
		for _, e := range pub.offered[offered:] {
			switch {
			case e.ID[0] < '4':
				rejected++
				if took[asWant(e)] {
					t.Errorf("%s: rejected event %s accepted", name, e.ID)
				}
			case !took[asWant(e)]:
				t.Errorf("%s: event %s not accepted", name, e.ID)
			}
		}
	}
	if rejected == 0 || metrics.get(attribution.MetricPublishFailures) != rejected {
		t.Fatalf("%d events rejected, %d publish failures counted", rejected, metrics.get(attribution.MetricPublishFailures))
	}
	checkRecords(t, "permanent", store, want)
}

// TestProcessorRedeliveryRepublishesStoredEvents: redelivering processed
// messages over unchanged series, to the warm processor one at a time and
// to a new one all at once, changes no record. The warm processor knows
// the bus took every event: it publishes nothing. A new one does not: it
// publishes again exactly what the stored records still hold as not
// acknowledged (same IDs, same details: a first delivery may have died
// before publishing them), and nothing else.
func TestProcessorRedeliveryRepublishesStoredEvents(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	bodies := faultStream(t, 60, 0) // an amendment redelivered late would revert
	want := mustOracle(t, reg, th, bodies)
	store := memstore.New()
	pub := &recorder{}
	msgs := messages(bodies)
	p := newProcessor(store, pub, reg, th)
	for i, err := range p.Process(context.Background(), msgs) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	diffEvents(t, "delivery", bySeries(t, pub.events()), want.events)
	before := summaries(store)

	for _, m := range msgs {
		calls := pub.callCount()
		if err := p.Process(context.Background(), []attribution.Message{m})[0]; err != nil {
			t.Fatalf("warm: redelivered message %s: %v", m.ID, err)
		}
		if pub.callCount() != calls {
			t.Errorf("warm: message %s published %v, though the bus took every event", m.ID, wants(eventsOf(pub.events()[len(pub.events())-1:])))
		}
	}
	if fmt.Sprint(summaries(store)) != fmt.Sprint(before) {
		t.Errorf("warm: redelivery changed the records")
	}

	owed := make(map[string]wantEvent)
	for _, r := range store.Records() {
		for _, e := range r.Pending() {
			owed[e.ID] = asWant(e)
		}
	}
	if len(owed) == 0 {
		t.Fatal("no record holds an event not acknowledged: the stream does not show a republication")
	}
	n := len(pub.events())
	for i, err := range newProcessor(store, pub, reg, th).Process(context.Background(), msgs) {
		if err != nil {
			t.Fatalf("cold: redelivered message %d: %v", i, err)
		}
	}
	got := make(map[string]wantEvent)
	for _, e := range eventsOf(pub.events()[n:]) {
		if _, twice := got[e.ID]; twice {
			t.Errorf("cold: %s published twice", e.ID)
		}
		got[e.ID] = asWant(e)
	}
	if fmt.Sprint(got) != fmt.Sprint(owed) {
		t.Errorf("cold: published\n %v\nwant what the records still owe\n %v", got, owed)
	}
	if fmt.Sprint(summaries(store)) != fmt.Sprint(before) {
		t.Errorf("cold: redelivery changed the records")
	}
	// Every copy is exact and no event is new.
	diffEvents(t, "redelivery", bySeries(t, pub.events()), want.events)
	checkRecords(t, "redelivery", store, want)
}

// interleavingStore lets another writer process a message right before
// every few commits of this one, so that the commit meets a record that
// changed since it was read: deterministic version conflicts.
type interleavingStore struct {
	*memstore.Store
	every   int
	mu      sync.Mutex
	commits int
	other   func(c *attribution.Commit) // processes the other writer's next message of c's series
}

func (s *interleavingStore) Commit(ctx context.Context, c *attribution.Commit) error {
	s.mu.Lock()
	s.commits++
	if s.commits%s.every == 0 {
		s.other(c)
	}
	s.mu.Unlock()
	return s.Store.Commit(ctx, c)
}

// TestProcessorInterleavedWriters runs two processors over one store, the
// second one stepping in between the first one's read and write. Without
// amendments the final states do not depend on order; by sequence, each
// series' events form one unbroken chain with one event per transition.
func TestProcessorInterleavedWriters(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	for seed := range uint64(2) {
		t.Run(fmt.Sprintf("stream%d", seed), func(t *testing.T) {
			bodies := faultStream(t, 70+seed, 0)
			want := mustOracle(t, reg, th, bodies)
			shared := memstore.New()
			pub := &recorder{}
			metrics := &countingMetrics{}
			msgs := messages(bodies)
			other := newProcessor(shared, pub, reg, th)
			other.Concurrency = 1
			reversed := slices.Clone(msgs)
			slices.Reverse(reversed)
			store := &interleavingStore{Store: shared, every: 2, other: func(c *attribution.Commit) {
				// The other writer's next message of a series this commit
				// writes, so that the commit meets a changed record.
				j := slices.IndexFunc(reversed, func(m attribution.Message) bool {
					return slices.ContainsFunc(c.Series, func(r *attribution.SeriesRecord) bool { return r.Key == seriesOfMessage(t, m) })
				})
				if j < 0 {
					return
				}
				m := reversed[j]
				reversed = slices.Delete(reversed, j, j+1)
				if err := other.Process(context.Background(), []attribution.Message{m})[0]; err != nil {
					t.Errorf("second writer, message %s: %v", m.ID, err)
				}
			}}
			p := newProcessor(store, pub, reg, th)
			p.Concurrency = 1
			p.Metrics = metrics
			rng := rand.New(rand.NewPCG(seed, 12))
			for i := 0; i < len(msgs); {
				n := min(len(msgs)-i, 1+rng.IntN(20))
				batch := msgs[i : i+n]
				// A unit that meets too many conflicts fails with a
				// retryable error; the queue redelivers it.
				for attempt := 0; len(batch) > 0; attempt++ {
					if attempt > 10 {
						t.Fatalf("first writer: messages %d..%d keep failing", i, i+n)
					}
					var again []attribution.Message
					for j, err := range p.Process(context.Background(), batch) {
						if err != nil {
							if attribution.ErrorCode(err) != attribution.ECONFLICT {
								t.Fatalf("first writer, message %s: %v", batch[j].ID, err)
							}
							again = append(again, batch[j])
						}
					}
					batch = again
				}
				i += n
			}
			for _, err := range other.Process(context.Background(), reversed) {
				if err != nil {
					t.Fatalf("second writer: %v", err)
				}
			}
			if metrics.get(attribution.MetricVersionConflicts) == 0 {
				t.Fatalf("no version conflict arose")
			}
			checkOrderFreeOutcome(t, "interleaved", shared, want, pub.events(), th)
		})
	}
}

// checkOrderFreeOutcome checks what concurrent writers must leave whatever
// their interleaving: the oracle's states, one record per series, and per
// series an unbroken chain of distinct events, one per transition.
func checkOrderFreeOutcome(tb testing.TB, name string, store *memstore.Store, want *oracle, events []recorded, th attribution.Thresholds) {
	tb.Helper()
	records := store.Records()
	for _, r := range records {
		if r.Current == nil || *r.Current != want.current[r.Key] {
			tb.Errorf("%s: %s: state %+v, want %+v", name, r.Key, r.Current, want.current[r.Key])
		}
	}
	if len(records) != len(want.current) {
		tb.Errorf("%s: %d records, want %d", name, len(records), len(want.current))
	}
	checkSuspicionRule(tb, name, events, th)
	checkEveryTransitionPublished(tb, name, store, events)
}

// failingStore fails the commits fail picks (given their 1-based number) with err;
// when written is set the commit is stored first (a lost response).
type failingStore struct {
	*memstore.Store
	fail    func(n int, c *attribution.Commit) bool
	written bool
	err     error
	mu      sync.Mutex // the series of one identity commit in parallel
	commits int
}

func (s *failingStore) Commit(ctx context.Context, c *attribution.Commit) error {
	s.mu.Lock()
	s.commits++
	fail := s.fail(s.commits, c)
	s.mu.Unlock()
	if !fail {
		return s.Store.Commit(ctx, c)
	}
	if s.written {
		if err := s.Store.Commit(ctx, c); err != nil {
			return err
		}
	}
	return s.err
}

// TestProcessorLostResponseWarmRedelivery is the smallest case of a lost
// commit response: the first observation of a series is stored, the
// response is lost, the message fails; its redelivery to the same
// processor finds the observation stored. The state_changed event the
// commit stored must be published by then: its series owed it, so the
// first delivery already offered it, and the redelivery offers it again
// only if the bus did not take it.
func TestProcessorLostResponseWarmRedelivery(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	store := &failingStore{Store: memstore.New(), fail: func(n int, _ *attribution.Commit) bool { return n == 1 }, written: true, err: errors.New("connection reset")}
	pub := &recorder{}
	p := newProcessor(store, pub, reg, th)
	bodies := [][]byte{spec{Attacker: "att-1", Primitive: "motor.input_modality", Ref: "r1", TS: 1, Value: `"typed"`}.body()}
	msg := messages(bodies)
	stored := mustOracle(t, reg, th, bodies).carried[0]
	if len(stored) != 1 || stored[0].DetailType != attribution.EventStateChanged {
		t.Fatalf("the oracle stores %v with the observation, want one state_changed", stored)
	}
	if err := p.Process(context.Background(), msg)[0]; err == nil {
		t.Fatalf("first delivery: no error, though the commit reported one")
	}
	if err := p.Process(context.Background(), msg)[0]; err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	if got := wants(eventsOf(pub.events())); !slices.Equal(got, stored) {
		t.Errorf("published %v, want the state_changed the lost commit stored, once: %v", got, stored)
	}
}

// TestProcessorFailedCommitKeepsEarlierEvents: a batch of one identity
// needs two commits (the second message is amended within the batch);
// the second commit fails. The messages of the first commit succeed, so
// the events stored with their observations must be published now: only
// a redelivery of those messages would publish them later.
func TestProcessorFailedCommitKeepsEarlierEvents(t *testing.T) {
	reg := mustTestRegistry(t)
	cases := []struct {
		name    string
		written bool
	}{
		{"throttled", false},
		{"lost response", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			amendment := func(_ int, c *attribution.Commit) bool {
				return slices.ContainsFunc(c.Applied, func(o attribution.Observation) bool { return o.Value == `"de"` })
			}
			store := &failingStore{Store: memstore.New(), fail: amendment, written: tc.written, err: errors.New("throttled")}
			pub := &recorder{}
			p := newProcessor(store, pub, reg, attribution.DefaultThresholds())
			a := spec{Attacker: "att-1", Primitive: "motor.input_modality", Ref: "r1", TS: 1, Value: `"typed"`}
			b := spec{Attacker: "att-1", Primitive: "environmental.locale", Ref: "r1", TS: 2, Value: `"en"`}
			amended := b
			amended.Value = `"de"`
			bodies := [][]byte{a.body(), b.body(), amended.body()}
			msgs := messages(bodies)
			carried := mustOracle(t, reg, attribution.DefaultThresholds(), bodies).carriedBy(t, msgs)
			errs := p.Process(context.Background(), msgs)
			if errs[2] == nil {
				t.Fatalf("the message of the failed commit succeeded")
			}
			succeeded := 0
			for i, m := range msgs[:2] {
				if errs[i] != nil {
					continue // failing is allowed: it will be redelivered
				}
				succeeded++
				if len(carried[m.ID]) == 0 {
					t.Fatalf("message %d: the first observation of a series caused no event", i)
				}
				if missing := notPublished(pub.events(), carried[m.ID]); len(missing) > 0 {
					t.Errorf("message %d succeeded, yet the events of its observation %v were not published", i, missing)
				}
			}
			if succeeded == 0 {
				t.Fatalf("no message of the first commit succeeded: %v", errs[:2])
			}
		})
	}
}

// staleStore serves eventually consistent reads one write behind: a
// LoadSeries or LoadIdentity that does not ask for consistency gets the
// record as it was before its latest commit.
type staleStore struct {
	*memstore.Store
	mu         sync.Mutex
	series     map[attribution.SeriesKey]*attribution.SeriesRecord // nil: did not exist
	identities map[string]*attribution.IdentityRecord
	staleReads int
}

func newStaleStore() *staleStore {
	return &staleStore{
		Store:      memstore.New(),
		series:     make(map[attribution.SeriesKey]*attribution.SeriesRecord),
		identities: make(map[string]*attribution.IdentityRecord),
	}
}

func (s *staleStore) Commit(ctx context.Context, c *attribution.Commit) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := make(map[attribution.SeriesKey]*attribution.SeriesRecord)
	for _, r := range c.Series {
		got, err := s.Store.LoadSeries(ctx, r.Key.IdentityUUID, []string{r.Key.Primitive}, true)
		if err != nil {
			return err
		}
		before[r.Key] = got[r.Key.Primitive]
	}
	var identity *attribution.IdentityRecord
	if c.Identity != nil {
		got, err := s.Store.LoadIdentity(ctx, c.Identity.IdentityUUID, true)
		if err != nil {
			return err
		}
		identity = got
	}
	if err := s.Store.Commit(ctx, c); err != nil {
		return err
	}
	for k, r := range before {
		s.series[k] = r
	}
	if c.Identity != nil {
		s.identities[c.Identity.IdentityUUID] = identity
	}
	return nil
}

func (s *staleStore) LoadSeries(ctx context.Context, identity string, primitives []string, consistent bool) (map[string]*attribution.SeriesRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out, err := s.Store.LoadSeries(ctx, identity, primitives, true)
	if err != nil || consistent {
		return out, err
	}
	for _, p := range primitives {
		k := attribution.SeriesKey{IdentityUUID: identity, Primitive: p}
		old, ok := s.series[k]
		if !ok {
			continue
		}
		s.staleReads++
		if old == nil {
			delete(out, p)
		} else {
			out[p] = old.Clone()
		}
	}
	return out, nil
}

func (s *staleStore) LoadIdentity(ctx context.Context, identity string, consistent bool) (*attribution.IdentityRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.identities[identity]; ok && !consistent {
		s.staleReads++
		return old.Clone(), nil
	}
	return s.Store.LoadIdentity(ctx, identity, true)
}

// TestProcessorStaleReads serves every cheap read one write behind, to a
// new processor for every message (a warm one reads its cache). A stale
// record must only ever cost a conflict and a consistent re-read: each
// message publishes what its series owes, its own events included, and
// the states come out as in a clean run.
func TestProcessorStaleReads(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	for seed := range uint64(2) {
		t.Run(fmt.Sprintf("stream%d", seed), func(t *testing.T) {
			bodies := faultStream(t, 80+seed, 0.05)
			want := mustOracle(t, reg, th, bodies)
			store := newStaleStore()
			pub := &recorder{}
			msgs := messages(bodies)
			carried := want.carriedBy(t, msgs)
			for i, m := range msgs {
				p := newProcessor(store, pub, reg, th)
				n := len(pub.events())
				if err := p.Process(context.Background(), []attribution.Message{m})[0]; err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				checkOffered(t, fmt.Sprintf("message %d", i), eventsOf(pub.events()[n:]), []attribution.Message{m}, carried)
				if missing := notPublished(pub.events()[n:], carried[m.ID]); len(missing) > 0 {
					t.Fatalf("message %d did not publish its events %v", i, missing)
				}
			}
			if store.staleReads == 0 {
				t.Fatalf("no stale read served")
			}
			checkRecords(t, "stale", store.Store, want)
			stateChangedOrder(t, firstDeliveries(t, pub.events()), want)
		})
	}
}

// TestProcessorStaleReadOnRedelivery: the bus fails, the message fails,
// its event stored with its observation; the redelivery reaches a new
// processor whose cheap read is one write behind, so the record it plans
// from has never seen the observation. The commit finds the observation
// stored (a duplicate) with its event, and the redelivery must publish
// that event: its success must mean the event went out.
func TestProcessorStaleReadOnRedelivery(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	store := newStaleStore()
	bodies := [][]byte{spec{Attacker: "att-1", Primitive: "motor.input_modality", Ref: "r1", TS: 1, Value: `"typed"`}.body()}
	msg := messages(bodies)
	stored := mustOracle(t, reg, th, bodies).carried[0]
	bus := &switchPublisher{fail: true}
	if err := newProcessor(store, bus, reg, th).Process(context.Background(), msg)[0]; err == nil {
		t.Fatalf("first delivery succeeded though the bus failed")
	}
	bus.fail = false
	if err := newProcessor(store, bus, reg, th).Process(context.Background(), msg)[0]; err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	if got := wants(bus.accepted); len(stored) == 0 || !slices.Equal(got, stored) {
		t.Errorf("redelivery published %v, want the event stored with the observation %v", got, stored)
	}
	if store.staleReads == 0 {
		t.Errorf("the redelivery read nothing stale")
	}
}

// switchPublisher fails every call with a transport error while fail is
// set, and accepts everything otherwise.
type switchPublisher struct {
	mu       sync.Mutex
	fail     bool
	accepted []attribution.Event
}

func (p *switchPublisher) Publish(_ context.Context, events []attribution.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail {
		return errors.New("put events: connection refused")
	}
	p.accepted = append(p.accepted, events...)
	return nil
}
