package attribution_test

import (
	"context"
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

// seriesOf returns the series a message body belongs to.
func seriesOf(tb testing.TB, body []byte) attribution.SeriesKey {
	tb.Helper()
	obs, err := attribution.DecodeMessage(body)
	if err != nil {
		tb.Fatalf("decode: %v", err)
	}
	return attribution.SeriesKey{IdentityUUID: attribution.StubIdentityID(obs.AttackerUUID), Primitive: obs.Primitive}
}

// pendingOf returns the IDs of the events a series' stored outbox still
// holds.
func pendingOf(store *memstore.Store, key attribution.SeriesKey) []string {
	var ids []string
	for _, r := range store.Records() {
		if r.Key == key {
			for _, e := range r.Pending() {
				ids = append(ids, e.ID)
			}
		}
	}
	return ids
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
// finds them stored and must still publish what the lost commit
// produced, before it reports success. The outcome must be that of a
// clean run: the same events, no observation counted twice.
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
							if ids := pendingOf(store.Store, seriesOf(t, batch[j].Body)); len(ids) > 0 {
								t.Fatalf("message %s (delivery %d) succeeded, yet its series still holds unpublished events %v", batch[j].ID, attempt+1, ids)
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
// counted once, and each series' events must form one unbroken chain.
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
			for _, r := range store.Records() {
				if r.Current == nil || *r.Current != want.current[r.Key] {
					t.Errorf("%s: state %+v, want %+v", r.Key, r.Current, want.current[r.Key])
				}
				if len(r.Pending()) > 0 {
					t.Errorf("%s: %d events left unpublished", r.Key, len(r.Pending()))
				}
			}
			if got := len(store.Records()); got != len(want.current) {
				t.Errorf("%d records, want %d", got, len(want.current))
			}
			checkSuspicionRule(t, "concurrent", firstDeliveries(pub.events()), th)
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
	calls    int
	failed   bool // the last call failed
	accepted []recorded
	offered  []attribution.Event // in the last call
	details  map[string]string   // every detail ever offered, by ID
	failures int
}

func (f *flakyPublisher) Publish(_ context.Context, events []attribution.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.offered = slices.Clone(events)
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
			f.accepted = append(f.accepted, recorded{Call: f.calls, Event: e})
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
		perr := &attribution.PublishError{}
		for _, e := range events[k:] {
			perr.Failed = append(perr.Failed, attribution.FailedEvent{Event: e, Code: "ThrottlingException", Message: "Rate exceeded", Retryable: true})
		}
		return perr
	case "unsent":
		return errors.New("put events: dial tcp: connection refused")
	default: // "sent": the bus took them, the response was lost
		accept(events)
		return errors.New("put events: read: connection reset by peer")
	}
}

// TestProcessorPublishFailures makes the bus fail now and then. A message
// whose series' events were not all accepted must fail, with the events
// kept in the outbox; its redelivery must publish exactly the missing
// events, with their first IDs; in the end every event of a clean run is
// published, none is new, none is lost.
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
				for i, m := range messages(bodies) {
					key := seriesOf(t, m.Body)
					err := p.Process(context.Background(), []attribution.Message{m})[0]
					if err == nil {
						if ids := pendingOf(store, key); len(ids) > 0 {
							t.Fatalf("message %d succeeded with events %v unpublished", i, ids)
						}
						continue
					}
					if attribution.ErrorCode(err) == attribution.EINVALID || !pub.failed {
						t.Fatalf("message %d: %v (code %s, the bus failed: %v)", i, err, attribution.ErrorCode(err), pub.failed)
					}
					missing := pendingOf(store, key)
					if len(missing) == 0 {
						t.Fatalf("message %d failed, yet its series holds no unpublished event", i)
					}
					// Redelivery: the bus works this time.
					if err := p.Process(context.Background(), []attribution.Message{m})[0]; err != nil {
						t.Fatalf("message %d, redelivered: %v", i, err)
					}
					var resent []string
					for _, e := range pub.offered {
						resent = append(resent, e.ID)
					}
					if !slices.Equal(resent, missing) {
						t.Fatalf("message %d: redelivery published %v, the missing events were %v", i, resent, missing)
					}
					if ids := pendingOf(store, key); len(ids) > 0 {
						t.Fatalf("message %d: redelivered, events %v still unpublished", i, ids)
					}
				}
				if pub.failures <= 0 {
					t.Fatalf("failures = %d: none injected, or an event ID came back with another detail", pub.failures)
				}
				// Every event of the clean run, with its detail, and no other.
				wantIDs := make(map[string]string)
				for _, list := range want.events {
					for _, e := range list {
						wantIDs[e.ID] = e.Detail
					}
				}
				got := make(map[string]int)
				var firsts []recorded
				for _, r := range pub.accepted {
					if got[r.Event.ID]++; got[r.Event.ID] == 1 {
						firsts = append(firsts, r)
					}
					if d, ok := wantIDs[r.Event.ID]; !ok || d != string(r.Event.Detail) {
						t.Errorf("published %s %s, not an event of the clean run", r.Event.ID, r.Event.Detail)
					}
				}
				for id := range wantIDs {
					if got[id] == 0 {
						t.Errorf("event %s %s never published", id, wantIDs[id])
					}
					if got[id] > 1 && mode != "sent" {
						t.Errorf("event %s published %d times though the bus never took it twice", id, got[id])
					}
				}
				stateChangedOrder(t, firsts, want)
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
// batches behind the rest of the queue, as SQS does; whatever the order of
// redelivery, every event of a clean run is published and none is new.
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
			failedCalls := 0
			for rounds := 0; len(queue) > 0; rounds++ {
				if rounds > 10*len(bodies) {
					t.Fatalf("queue never drains: %d messages left", len(queue))
				}
				n := min(len(queue), 1+rng.IntN(20))
				batch := queue[:n]
				queue = queue[n:]
				for j, err := range p.Process(context.Background(), batch) {
					key := seriesOf(t, batch[j].Body)
					if err == nil {
						if ids := pendingOf(store, key); len(ids) > 0 {
							t.Fatalf("message %s succeeded with events %v unpublished", batch[j].ID, ids)
						}
						continue
					}
					failedCalls++
					if len(pendingOf(store, key)) == 0 {
						t.Fatalf("message %s failed (%v), yet its series holds no unpublished event", batch[j].ID, err)
					}
					queue = append(queue, batch[j])
				}
			}
			if failedCalls == 0 {
				t.Fatalf("no message failed")
			}
			wantIDs := make(map[string]string)
			for _, list := range want.events {
				for _, e := range list {
					wantIDs[e.ID] = e.Detail
				}
			}
			got := make(map[string]bool)
			for _, r := range pub.accepted {
				if d, ok := wantIDs[r.Event.ID]; !ok || d != string(r.Event.Detail) {
					t.Errorf("published %s %s, not an event of the clean run", r.Event.ID, r.Event.Detail)
				}
				if got[r.Event.ID] {
					t.Errorf("event %s accepted twice", r.Event.ID)
				}
				got[r.Event.ID] = true
			}
			if len(got) != len(wantIDs) {
				t.Errorf("%d distinct events published, want %d", len(got), len(wantIDs))
			}
			checkRecords(t, "batched", store, want)
		})
	}
}

// permanentPublisher rejects some events for good.
type permanentPublisher struct {
	mu       sync.Mutex
	reject   func(attribution.Event) bool
	accepted []recorded
	offered  map[string]int
	calls    int
}

func (p *permanentPublisher) Publish(_ context.Context, events []attribution.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.offered == nil {
		p.offered = make(map[string]int)
	}
	perr := &attribution.PublishError{}
	for _, e := range events {
		p.offered[e.ID]++
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
// rejects for good is dropped: the message succeeds, the event is offered
// once and never again, the events after it still go out, and a
// redelivery of the whole stream publishes nothing.
func TestProcessorPublishPermanentFailure(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	bodies := faultStream(t, 50, 0.05)
	want := mustOracle(t, reg, th, bodies)
	store := memstore.New()
	pub := &permanentPublisher{reject: func(e attribution.Event) bool { return e.ID[0] < '4' }}
	metrics := &countingMetrics{}
	p := newProcessor(store, pub, reg, th)
	p.Metrics = metrics
	msgs := messages(bodies)
	for i, err := range p.Process(context.Background(), msgs) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	rejected := 0
	accepted := make(map[string]bool)
	for _, r := range pub.accepted {
		accepted[r.Event.ID] = true
	}
	for _, list := range want.events {
		for _, e := range list {
			switch {
			case pub.offered[e.ID] != 1:
				t.Errorf("event %s offered %d times, want once", e.ID, pub.offered[e.ID])
			case e.ID[0] < '4':
				rejected++
				if accepted[e.ID] {
					t.Errorf("rejected event %s accepted", e.ID)
				}
			case !accepted[e.ID]:
				t.Errorf("event %s never accepted", e.ID)
			}
		}
	}
	if rejected == 0 || metrics.get(attribution.MetricPublishFailures) != rejected {
		t.Fatalf("%d events rejected, %d publish failures counted", rejected, metrics.get(attribution.MetricPublishFailures))
	}
	checkRecords(t, "permanent", store, want)
	calls := pub.calls
	for i, err := range p.Process(context.Background(), msgs) {
		if err != nil {
			t.Fatalf("redelivered message %d: %v", i, err)
		}
	}
	if pub.calls != calls {
		t.Errorf("redelivering the whole stream published %d more times", pub.calls-calls)
	}
}

// TestProcessorRedeliveryPublishesNothing: re-running a stream over
// unchanged series changes nothing and publishes nothing, in a warm
// processor and in a new one.
func TestProcessorRedeliveryPublishesNothing(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	bodies := faultStream(t, 60, 0) // an amendment redelivered late would revert
	store := memstore.New()
	pub := &recorder{}
	msgs := messages(bodies)
	p := newProcessor(store, pub, reg, th)
	for i, err := range p.Process(context.Background(), msgs) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	before := summaries(store)
	n := len(pub.events())
	if n == 0 {
		t.Fatalf("the stream published nothing")
	}
	for name, proc := range map[string]*attribution.Processor{"warm": p, "cold": newProcessor(store, pub, reg, th)} {
		for i, err := range proc.Process(context.Background(), msgs) {
			if err != nil {
				t.Fatalf("%s: redelivered message %d: %v", name, i, err)
			}
		}
		if got := len(pub.events()); got != n {
			t.Errorf("%s: redelivery published %d events", name, got-n)
		}
		if fmt.Sprint(summaries(store)) != fmt.Sprint(before) {
			t.Errorf("%s: redelivery changed the records", name)
		}
	}
}

// interleavingStore lets another writer process a message right before
// every few commits of this one, so that the commit meets a record that
// changed since it was read: deterministic version conflicts.
type interleavingStore struct {
	*memstore.Store
	every   int
	commits int
	other   func() // processes the other writer's next message
}

func (s *interleavingStore) Commit(ctx context.Context, c *attribution.Commit) error {
	s.commits++
	if s.commits%s.every == 0 {
		s.other()
	}
	return s.Store.Commit(ctx, c)
}

// TestProcessorInterleavedWriters runs two processors over one store, the
// second one stepping in between the first one's read and write. Without
// amendments the final states do not depend on order.
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
			next := 0
			store := &interleavingStore{Store: shared, every: 2, other: func() {
				if next < len(reversed) {
					if err := other.Process(context.Background(), reversed[next:next+1])[0]; err != nil {
						t.Errorf("second writer, message %s: %v", reversed[next].ID, err)
					}
					next++
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
			for _, err := range other.Process(context.Background(), reversed[next:]) {
				if err != nil {
					t.Fatalf("second writer: %v", err)
				}
			}
			if metrics.get(attribution.MetricVersionConflicts) == 0 {
				t.Fatalf("no version conflict arose")
			}
			for _, r := range shared.Records() {
				if r.Current == nil || *r.Current != want.current[r.Key] {
					t.Errorf("%s: state %+v, want %+v", r.Key, r.Current, want.current[r.Key])
				}
				if len(r.Pending()) > 0 {
					t.Errorf("%s: %d events left unpublished", r.Key, len(r.Pending()))
				}
			}
			if got := len(shared.Records()); got != len(want.current) {
				t.Errorf("%d records, want %d", got, len(want.current))
			}
			checkSuspicionRule(t, "interleaved", firstDeliveries(pub.events()), th)
		})
	}
}

// firstDeliveries drops repeated deliveries of an event: two writers that
// both see an event in an outbox may both publish it, with its one ID.
func firstDeliveries(events []recorded) []recorded {
	seen := make(map[string]bool)
	var out []recorded
	for _, r := range events {
		if !seen[r.Event.ID] {
			seen[r.Event.ID] = true
			out = append(out, r)
		}
	}
	return out
}

// failingStore fails the commits fail picks (given their 1-based number) with err;
// when written is set the commit is stored first (a lost response).
type failingStore struct {
	*memstore.Store
	fail    func(n int, c *attribution.Commit) bool
	written bool
	err     error
	commits int
}

func (s *failingStore) Commit(ctx context.Context, c *attribution.Commit) error {
	s.commits++
	if !s.fail(s.commits, c) {
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
// processor must publish the state_changed event the commit produced.
func TestProcessorLostResponseWarmRedelivery(t *testing.T) {
	reg := mustTestRegistry(t)
	store := &failingStore{Store: memstore.New(), fail: func(n int, _ *attribution.Commit) bool { return n == 1 }, written: true, err: errors.New("connection reset")}
	pub := &recorder{}
	p := newProcessor(store, pub, reg, attribution.DefaultThresholds())
	msg := messages([][]byte{spec{Attacker: "att-1", Primitive: "motor.input_modality", Ref: "r1", TS: 1, Value: `"typed"`}.body()})
	if err := p.Process(context.Background(), msg)[0]; err == nil {
		t.Fatalf("first delivery: no error, though the commit reported one")
	}
	if err := p.Process(context.Background(), msg)[0]; err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	if n := len(pub.events()); n != 1 {
		t.Errorf("redelivery published %d events, want the 1 state_changed the lost commit stored", n)
	}
	if ids := pendingOf(store.Store, seriesOf(t, msg[0].Body)); len(ids) > 0 {
		t.Errorf("redelivery succeeded with %v still in the outbox", ids)
	}
}

// TestProcessorFailedCommitKeepsEarlierEvents: a batch of one identity
// needs two commits (the second message is amended within the batch);
// the second commit fails. The messages of the first commit succeed, so
// their events must be published now: nothing would publish them later.
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
				return slices.ContainsFunc(c.Observations, func(w attribution.ObservationWrite) bool { return w.Replaces != "" })
			}
			store := &failingStore{Store: memstore.New(), fail: amendment, written: tc.written, err: errors.New("throttled")}
			pub := &recorder{}
			p := newProcessor(store, pub, reg, attribution.DefaultThresholds())
			a := spec{Attacker: "att-1", Primitive: "motor.input_modality", Ref: "r1", TS: 1, Value: `"typed"`}
			b := spec{Attacker: "att-1", Primitive: "environmental.locale", Ref: "r1", TS: 2, Value: `"en"`}
			amended := b
			amended.Value = `"de"`
			msgs := messages([][]byte{a.body(), b.body(), amended.body()})
			errs := p.Process(context.Background(), msgs)
			if errs[2] == nil {
				t.Fatalf("the message of the failed commit succeeded")
			}
			for i, m := range msgs[:2] {
				if errs[i] != nil {
					continue // failing is allowed: it will be redelivered
				}
				if ids := pendingOf(store.Store, seriesOf(t, m.Body)); len(ids) > 0 {
					t.Errorf("message %d succeeded, yet its series holds unpublished events %v", i, ids)
				}
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
// record must only ever cost a conflict and a consistent re-read: the
// states come out as in a clean run.
func TestProcessorStaleReads(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	for seed := range uint64(2) {
		t.Run(fmt.Sprintf("stream%d", seed), func(t *testing.T) {
			bodies := faultStream(t, 80+seed, 0.05)
			want := mustOracle(t, reg, th, bodies)
			store := newStaleStore()
			pub := &recorder{}
			for i, m := range messages(bodies) {
				p := newProcessor(store, pub, reg, th)
				if err := p.Process(context.Background(), []attribution.Message{m})[0]; err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if ids := pendingOf(store.Store, seriesOf(t, m.Body)); len(ids) > 0 {
					t.Fatalf("message %d succeeded with events %v unpublished", i, ids)
				}
			}
			if store.staleReads == 0 {
				t.Fatalf("no stale read served")
			}
			checkRecords(t, "stale", store.Store, want)
			stateChangedOrder(t, firstDeliveries(pub.events()), want)
		})
	}
}

// TestProcessorStaleReadOnRedelivery: the bus fails, the message fails
// with its event kept in the outbox; the redelivery reaches a new
// processor whose cheap read is one write behind. It finds the
// observation stored (a duplicate) and must not take the stale record's
// empty outbox for the truth: its success must mean the event went out.
func TestProcessorStaleReadOnRedelivery(t *testing.T) {
	reg := mustTestRegistry(t)
	th := attribution.DefaultThresholds()
	store := newStaleStore()
	msg := messages([][]byte{spec{Attacker: "att-1", Primitive: "motor.input_modality", Ref: "r1", TS: 1, Value: `"typed"`}.body()})
	bus := &switchPublisher{fail: true}
	if err := newProcessor(store, bus, reg, th).Process(context.Background(), msg)[0]; err == nil {
		t.Fatalf("first delivery succeeded though the bus failed")
	}
	bus.fail = false
	if err := newProcessor(store, bus, reg, th).Process(context.Background(), msg)[0]; err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	if ids := pendingOf(store.Store, seriesOf(t, msg[0].Body)); len(ids) > 0 {
		t.Errorf("redelivery succeeded with %v still in the outbox (%d published)", ids, len(bus.accepted))
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
