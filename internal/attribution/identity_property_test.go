package attribution_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

// identityWorld is DECNET's clusterer as a test sees it: the identity
// events it published, in publishing order, and the membership they leave.
type identityWorld struct {
	literal map[string]string // attacker → DECNET identity
	parent  map[string]string // identity → the identity it is merged into
	ids     []string          // every identity formed
	events  [][]byte          // published identity events, in order
	ts      float64
}

func newIdentityWorld() *identityWorld {
	return &identityWorld{literal: map[string]string{}, parent: map[string]string{}, ts: 5000}
}

func (w *identityWorld) root(id string) string {
	for w.parent[id] != "" {
		id = w.parent[id]
	}
	return id
}

// canonical is the identity an attacker's observations belong to.
func (w *identityWorld) canonical(attacker string) string {
	if id, ok := w.literal[attacker]; ok {
		return w.root(id)
	}
	return attribution.StubIdentityID(attacker)
}

func (w *identityWorld) roots() []string {
	var out []string
	for _, id := range w.ids {
		if w.parent[id] == "" {
			out = append(out, id)
		}
	}
	return out
}

func (w *identityWorld) publish(rng *rand.Rand, topic string, payload map[string]any) {
	w.ts += 0.5 + rng.Float64()
	b, err := json.Marshal(map[string]any{
		"v": 1, "id": fmt.Sprintf("%016x", rng.Uint64()), "topic": topic,
		"type": strings.TrimPrefix(topic, attribution.IdentityTopicPrefix), "ts": w.ts, "payload": payload,
	})
	if err != nil {
		panic(err)
	}
	w.events = append(w.events, b)
}

// step publishes one random event as DECNET's clusterer would: identities
// formed and attackers linked (also away from another identity), merges of
// two canonical identities into the smaller uuid (so chains form), unmerges
// naming the canonical winner of the time, and repeats of earlier events.
func (w *identityWorld) step(rng *rand.Rand, attackers []string) {
	roots := w.roots()
	var merged []string
	for _, id := range w.ids {
		if w.parent[id] != "" {
			merged = append(merged, id)
		}
	}
	switch r := rng.IntN(10); {
	case r < 3 || len(roots) == 0:
		id := fmt.Sprintf("%08x-id", rng.Uint32())
		members := []string{attackers[rng.IntN(len(attackers))]}
		if rng.IntN(2) == 0 {
			members = append(members, attackers[rng.IntN(len(attackers))])
		}
		w.ids = append(w.ids, id)
		for _, a := range members {
			w.literal[a] = id
		}
		w.publish(rng, attribution.TopicIdentityFormed, map[string]any{"identity_uuid": id, "observation_uuids": members})
	case r < 5:
		id, a := roots[rng.IntN(len(roots))], attackers[rng.IntN(len(attackers))]
		w.literal[a] = id
		w.publish(rng, attribution.TopicIdentityLinked, map[string]any{"identity_uuid": id, "observation_uuid": a})
	case r < 8 && len(roots) >= 2:
		i, j := rng.IntN(len(roots)), rng.IntN(len(roots)-1)
		if j >= i {
			j++
		}
		winner, loser := min(roots[i], roots[j]), max(roots[i], roots[j])
		w.parent[loser] = winner
		w.publish(rng, attribution.TopicIdentityMerged, map[string]any{"winner_uuid": winner, "loser_uuid": loser})
	case r < 9 && len(merged) > 0:
		l := merged[rng.IntN(len(merged))]
		winner := w.root(l)
		delete(w.parent, l)
		w.publish(rng, attribution.TopicIdentityUnmerged, map[string]any{"resurrected_uuid": l, "former_winner_uuid": winner})
	case len(w.events) > 0:
		w.events = append(w.events, w.events[rng.IntN(len(w.events))]) // a repeat
	}
}

// identityPrimitives are the primitives of the identity streams: one of
// each kind.
var identityPrimitives = []string{"motor.input_modality", "toolchain.c2.beacon_interval_ms", "motor.digraph_simhash"}

func identityValue(rng *rand.Rand, prim string) string {
	switch prim {
	case "toolchain.c2.beacon_interval_ms":
		return jsonNumber(100 + 60*rng.Float64())
	case "motor.digraph_simhash":
		return fmt.Sprintf(`"h%d"`, rng.IntN(3))
	default:
		return []string{`"typed"`, `"pasted"`}[rng.IntN(3)/2]
	}
}

// genIdentityStream interleaves observations of a few attackers with the
// identity events of a world, shuffles the arrival order (identity events
// included) and redelivers some messages.
func genIdentityStream(rng *rand.Rand, nAttackers, nObs, nEvents int, amend bool) ([][]byte, *identityWorld) {
	attackers := make([]string, nAttackers)
	for i := range attackers {
		attackers[i] = fmt.Sprintf("att-%d", i)
	}
	w := newIdentityWorld()
	for range nEvents {
		w.step(rng, attackers)
	}
	bodies := slices.Clone(w.events)
	for i := range nObs {
		a := attackers[rng.IntN(len(attackers))]
		prim := identityPrimitives[rng.IntN(len(identityPrimitives))]
		s := spec{Attacker: a, Primitive: prim, Ref: fmt.Sprintf("%s#%03d", a, i), TS: 1000 + float64(rng.IntN(4000)), Value: identityValue(rng, prim), Confidence: 0.5}
		bodies = append(bodies, s.body())
		if amend && rng.IntN(12) == 0 {
			s.Value = identityValue(rng, prim)
			bodies = append(bodies, s.body())
		}
	}
	rng.Shuffle(len(bodies), func(i, j int) { bodies[i], bodies[j] = bodies[j], bodies[i] })
	for i := len(bodies) / 8; i > 0; i-- {
		at := rng.IntN(len(bodies))
		bodies = slices.Insert(bodies, at+rng.IntN(len(bodies)-at+1), bodies[at])
	}
	return bodies, w
}

// identityRun is how a stream is fed: by one processor one message at a
// time, in random batches, or by several processors (each with its own
// warm cache) at once, each retrying what failed as the queue would.
type identityRun struct {
	name       string
	batch      bool
	processors int
}

var identityRuns = []identityRun{
	{name: "single"},
	{name: "batched", batch: true},
	{name: "concurrent", batch: true, processors: 4},
}

// feed processes every message; invalid ones are kept aside (the DLQ),
// others that fail are delivered again.
func feed(tb testing.TB, run identityRun, store *memstore.Store, pub attribution.Publisher, bodies [][]byte, seed uint64) {
	tb.Helper()
	reg, th := mustTestRegistry(tb), attribution.DefaultThresholds()
	msgs := messages(bodies)
	workers := max(1, run.processors)
	var mu sync.Mutex
	queue := slices.Clone(msgs)
	take := func(rng *rand.Rand) []attribution.Message {
		mu.Lock()
		defer mu.Unlock()
		n := 1
		if run.batch {
			n = 1 + rng.IntN(10)
		}
		n = min(n, len(queue))
		out := queue[:n:n]
		queue = queue[n:]
		return out
	}
	requeue := func(m attribution.Message) {
		mu.Lock()
		defer mu.Unlock()
		queue = append(queue, m)
	}
	var wg sync.WaitGroup
	var failures int
	for wkr := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(wkr)))
			p := newProcessor(store, pub, reg, th)
			for idle := 0; idle < 50; {
				batch := take(rng)
				if len(batch) == 0 {
					idle++
					continue
				}
				idle = 0
				for i, err := range p.Process(context.Background(), batch) {
					switch {
					case err == nil, attribution.ErrorCode(err) == attribution.EINVALID:
					default:
						mu.Lock()
						failures++
						mu.Unlock()
						if failures > 10*len(msgs) {
							tb.Errorf("message keeps failing: %v", err)
							return
						}
						requeue(batch[i])
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(queue) > 0 {
		tb.Fatalf("%d messages never succeeded", len(queue))
	}
}

// TestIdentityEventsConverge: whatever the interleaving of observations and
// identity events (formed, linked, merged, chained, unmerged, repeated),
// redelivered and reordered, and whether one processor or several at once
// apply them, (1) every attacker resolves to the canonical identity of
// DECNET's final membership, (2) the state of every (canonical identity,
// primitive) is the reference merger over the union of the stored
// observations of its attackers, in series order — a from-scratch
// recompute —, no observation is lost, and (3) every event history is a
// valid chain: sequences consecutive per series, each old_state the state
// before it, the last new_state the stored one.
func TestIdentityEventsConverge(t *testing.T) {
	for _, run := range identityRuns {
		for stream := range 40 {
			t.Run(fmt.Sprintf("%s/stream%02d", run.name, stream), func(t *testing.T) {
				t.Parallel()
				rng := rand.New(rand.NewPCG(uint64(stream), 13))
				bodies, world := genIdentityStream(rng, 2+rng.IntN(5), 20+rng.IntN(60), 3+rng.IntN(12), run.processors == 0)
				store := memstore.New()
				pub := &recorder{}
				feed(t, run, store, pub, bodies, uint64(stream))
				checkMembership(t, store, world, bodies)
				checkUnionStates(t, store, world, bodies)
				checkEventChains(t, store, pub.events())
			})
		}
	}
}

// attackersOf lists the attackers a stream observes or names.
func attackersOf(bodies [][]byte) []string {
	seen := map[string]bool{}
	for _, b := range bodies {
		d, err := attribution.Decode(b)
		switch {
		case err != nil:
		case d.Identity != nil:
			for _, a := range d.Identity.Attackers {
				seen[a] = true
			}
		default:
			seen[d.Observation.AttackerUUID] = true
		}
	}
	out := make([]string, 0, len(seen))
	for a := range seen {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// storedCanonical follows the stored records from an attacker to its
// canonical identity.
func storedCanonical(tb testing.TB, store *memstore.Store, attacker string) string {
	tb.Helper()
	ctx := context.Background()
	ar, err := store.LoadAttacker(ctx, attacker)
	if err != nil {
		tb.Fatal(err)
	}
	id := ar.IdentityUUID
	if id == "" {
		id = attribution.StubIdentityID(attacker)
	}
	for range attribution.MaxMergeChain {
		rec, err := store.LoadIdentity(ctx, id, true)
		if err != nil {
			tb.Fatal(err)
		}
		if rec.Parent == "" {
			if !rec.HasMember(id, attacker) && ar.IdentityUUID != "" {
				tb.Errorf("attacker %s resolves to %s, which does not list it (members %v)", attacker, id, rec.Members)
			}
			return id
		}
		id = rec.Parent
	}
	tb.Fatalf("attacker %s: merge chain too long", attacker)
	return ""
}

func checkMembership(tb testing.TB, store *memstore.Store, world *identityWorld, bodies [][]byte) {
	tb.Helper()
	for _, a := range attackersOf(bodies) {
		if got, want := storedCanonical(tb, store, a), world.canonical(a); got != want {
			tb.Errorf("attacker %s resolves to %s, DECNET's final membership says %s", a, got, want)
		}
	}
}

func checkUnionStates(tb testing.TB, store *memstore.Store, world *identityWorld, bodies [][]byte) {
	tb.Helper()
	reg, th := mustTestRegistry(tb), attribution.DefaultThresholds()
	members := map[string][]string{}
	sent := map[string]bool{}
	for _, a := range attackersOf(bodies) {
		c := world.canonical(a)
		members[c] = append(members[c], a)
	}
	for _, b := range bodies {
		if d, err := attribution.Decode(b); err == nil && d.Identity == nil {
			sent[d.Observation.AttackerUUID+"|"+d.Observation.Primitive+"|"+d.Observation.EvidenceRef] = true
		}
	}
	stored := 0
	records := map[attribution.SeriesKey]*attribution.SeriesRecord{}
	for _, r := range store.Records() {
		records[r.Key] = r
	}
	for c, as := range members {
		for _, prim := range identityPrimitives {
			var points []attribution.Point
			for _, a := range as {
				obs, err := store.StoredObservations(attribution.SeriesKey{IdentityUUID: attribution.StubIdentityID(a), Primitive: prim}), error(nil)
				if err != nil {
					tb.Fatal(err)
				}
				for _, o := range obs {
					if !sent[o.AttackerUUID+"|"+prim+"|"+o.EvidenceRef] || o.AttackerUUID != a {
						tb.Errorf("stored observation %s of %s was never sent by it", o.EvidenceRef, a)
					}
					points = append(points, o.Point())
				}
				stored += len(obs)
			}
			rec := records[attribution.SeriesKey{IdentityUUID: c, Primitive: prim}]
			if len(points) == 0 {
				if rec != nil && rec.Current != nil && rec.Current.ObservationCount != 0 {
					tb.Errorf("%s|%s: no observation, but the state counts %d", c, prim, rec.Current.ObservationCount)
				}
				continue
			}
			attribution.SortPoints(points)
			want := attribution.Merge(reg.Kind(prim), points, th)
			if rec == nil || rec.Current == nil {
				tb.Errorf("%s|%s: no state, want %+v", c, prim, want)
				continue
			}
			if d := stateDiff(*rec.Current, want); d != "" {
				tb.Errorf("%s|%s (attackers %v): %s", c, prim, as, d)
			}
		}
	}
	if stored != len(sent) {
		tb.Errorf("%d observations stored, %d distinct ones sent", stored, len(sent))
	}
}

func stateDiff(got, want attribution.State) string {
	close := func(a, b float64) bool { return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b)) }
	valueOK := got.CurrentValue == want.CurrentValue
	if !valueOK {
		g, err1 := got.CurrentValue.Float()
		w, err2 := want.CurrentValue.Float()
		valueOK = err1 == nil && err2 == nil && close(g, w)
	}
	if got.State != want.State || got.ObservationCount != want.ObservationCount || !close(got.Confidence, want.Confidence) ||
		!valueOK || got.LastObservationTS != want.LastObservationTS {
		return fmt.Sprintf("state %+v, want %+v (the merger over the union)", got, want)
	}
	return ""
}

func checkEventChains(tb testing.TB, store *memstore.Store, events []recorded) {
	tb.Helper()
	byID := map[string]attribution.Event{}
	type link struct {
		seq      int64
		old, new *string
	}
	chains := map[attribution.SeriesKey][]link{}
	rekeys := map[string][]int64{}
	for _, r := range events {
		e := r.Event
		if prev, ok := byID[e.ID]; ok {
			if string(prev.Detail) != string(e.Detail) {
				tb.Errorf("event %s published twice with different details:\n%s\n%s", e.ID, prev.Detail, e.Detail)
			}
			continue
		}
		byID[e.ID] = e
		switch e.DetailType {
		case attribution.EventStateChanged:
			var d attribution.StateChanged
			if err := json.Unmarshal(e.Detail, &d); err != nil {
				tb.Fatal(err)
			}
			k := attribution.SeriesKey{IdentityUUID: d.IdentityUUID, Primitive: d.Primitive}
			ns := d.NewState
			chains[k] = append(chains[k], link{d.Sequence, d.OldState, &ns})
		case attribution.EventIdentityRekeyed:
			var d attribution.IdentityRekeyed
			if err := json.Unmarshal(e.Detail, &d); err != nil {
				tb.Fatal(err)
			}
			rekeys[d.IdentityUUID] = append(rekeys[d.IdentityUUID], d.Sequence)
		}
	}
	records := map[attribution.SeriesKey]*attribution.SeriesRecord{}
	for _, r := range store.Records() {
		records[r.Key] = r
	}
	str := func(s *string) string {
		if s == nil {
			return "null"
		}
		return *s
	}
	for k, ls := range chains {
		slices.SortFunc(ls, func(a, b link) int { return int(a.seq - b.seq) })
		for i, l := range ls {
			if l.seq != int64(i+1) {
				tb.Errorf("%s: sequence %d at position %d: sequences must be consecutive from 1", k, l.seq, i+1)
				break
			}
			var prior *string
			if i > 0 {
				prior = ls[i-1].new
			}
			if str(l.old) != str(prior) {
				tb.Errorf("%s: event %d has old_state %s, the state before it is %s", k, l.seq, str(l.old), str(prior))
			}
		}
		rec := records[k]
		if rec == nil || rec.Current == nil || rec.Current.State != *ls[len(ls)-1].new || rec.Transitions != int64(len(ls)) {
			tb.Errorf("%s: events end in %s after %d transitions; the stored record disagrees: %+v", k, *ls[len(ls)-1].new, len(ls), rec)
		}
	}
	for k, rec := range records {
		if rec.Transitions > 0 && len(chains[k]) == 0 {
			tb.Errorf("%s: %d transitions stored, none published", k, rec.Transitions)
		}
	}
	for id, seqs := range rekeys {
		slices.Sort(seqs)
		for i, s := range seqs {
			if s != int64(i+1) {
				tb.Errorf("identity %s: rekeyed sequences %v are not consecutive", id, seqs)
				break
			}
		}
	}
}

// TestIdentityEventIsIdempotent: applying an identity event again, alone
// or after later events, changes no record and publishes nothing new.
func TestIdentityEventIsIdempotent(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	bodies, _ := genIdentityStream(rng, 4, 40, 10, false)
	store := memstore.New()
	pub := &recorder{}
	feed(t, identityRuns[0], store, pub, bodies, 3)
	before := store.Records()
	published := len(firstDeliveries(t, pub.events()))
	var again [][]byte
	for _, b := range bodies {
		if d, err := attribution.Decode(b); err == nil && d.Identity != nil {
			again = append(again, b)
		}
	}
	feed(t, identityRuns[0], store, pub, again, 4)
	after := store.Records()
	if len(before) != len(after) {
		t.Fatalf("%d records before, %d after", len(before), len(after))
	}
	for i := range before {
		if before[i].Version != after[i].Version {
			t.Errorf("%s rewritten by a repeated identity event", before[i].Key)
		}
	}
	if n := len(firstDeliveries(t, pub.events())); n != published {
		t.Errorf("%d new events after repeating identity events", n-published)
	}
}

// membershipRacer runs a membership change in the middle of an
// observation's commit: the observation was planned against the old
// membership and must be routed again, never counted under an identity it
// no longer belongs to.
type membershipRacer struct {
	*memstore.Store
	mu   sync.Mutex
	race func()
}

func (s *membershipRacer) Commit(ctx context.Context, c *attribution.Commit) error {
	s.mu.Lock()
	race := s.race
	s.race = nil
	s.mu.Unlock()
	if race != nil {
		race()
	}
	return s.Store.Commit(ctx, c)
}

func busEvent(topic, id string, ts float64, payload string) []byte {
	return fmt.Appendf(nil, `{"v":1,"id":%q,"topic":%q,"ts":%v,"payload":%s}`, id, topic, ts, payload)
}

// TestWarmCacheNeverRoutesToRetiredIdentity: a processor whose cache still
// maps an attacker to its stub keeps observing it after another processor
// linked the attacker to a DECNET identity — between planning and commit,
// and after. Its observations must land in the DECNET identity's series.
func TestWarmCacheNeverRoutesToRetiredIdentity(t *testing.T) {
	ctx := context.Background()
	reg, th := mustTestRegistry(t), attribution.DefaultThresholds()
	mem := memstore.New()
	store := &membershipRacer{Store: mem}
	warm := newProcessor(store, &recorder{}, reg, th)
	other := newProcessor(mem, &recorder{}, reg, th)
	obs := func(ref string, ts float64, prim string) attribution.Message {
		s := spec{Attacker: "att-w", Primitive: prim, Ref: ref, TS: ts, Value: `"typed"`, Confidence: 0.5}
		return attribution.Message{ID: ref, Body: s.body()}
	}
	mustProcess := func(p *attribution.Processor, msgs ...attribution.Message) {
		t.Helper()
		for _, err := range p.Process(ctx, msgs) {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	mustProcess(warm, obs("r1", 1, "motor.input_modality"), obs("r2", 2, "motor.input_modality"))
	link := attribution.Message{ID: "link", Body: busEvent(attribution.TopicIdentityLinked, "e1", 10, `{"identity_uuid":"I","observation_uuid":"att-w"}`)}
	// The link commits while the warm processor's next commit is in flight
	// (an existing series), then again for a new primitive (a new series).
	store.race = func() { mustProcess(other, link) }
	mustProcess(warm, obs("r3", 3, "motor.input_modality"))
	link2 := attribution.Message{ID: "link2", Body: busEvent(attribution.TopicIdentityLinked, "e2", 11, `{"identity_uuid":"J","observation_uuid":"att-w"}`)}
	store.race = func() { mustProcess(other, link2) }
	mustProcess(warm, obs("r4", 4, "cognitive.command_planning"))
	mustProcess(warm, obs("r5", 5, "motor.input_modality"))
	// Each identity's series froze when the attacker left it: the stub's
	// with r1 and r2, I's with r3 added; J's hold everything.
	stub := attribution.StubIdentityID("att-w")
	want := map[attribution.SeriesKey]int{
		{IdentityUUID: stub, Primitive: "motor.input_modality"}:      2,
		{IdentityUUID: "I", Primitive: "motor.input_modality"}:       3,
		{IdentityUUID: "J", Primitive: "motor.input_modality"}:       4,
		{IdentityUUID: "J", Primitive: "cognitive.command_planning"}: 1,
	}
	got := map[attribution.SeriesKey]int{}
	for _, r := range mem.Records() {
		got[r.Key] = r.Current.ObservationCount
	}
	if !maps.Equal(got, want) {
		t.Errorf("observation counts %v, want %v", got, want)
	}
	if got := storedCanonical(t, mem, "att-w"); got != "J" {
		t.Fatalf("att-w resolves to %s, want J", got)
	}
}
