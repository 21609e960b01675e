package attribution_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

// The primitives the stream tests use, by kind. temporal.gap_ms is made
// numeric by a registry override; the others are built-in.
var (
	catPrimitives  = []string{"motor.input_modality", "cognitive.command_planning", "environmental.locale"}
	numPrimitives  = []string{"toolchain.c2.beacon_interval_ms", "temporal.gap_ms"}
	hashPrimitives = []string{"motor.digraph_simhash", "toolchain.tls.jarm_server"}
)

func mustTestRegistry(tb testing.TB) attribution.Registry {
	tb.Helper()
	reg, err := attribution.BuiltinRegistry().WithOverrides([]byte(`{"temporal.gap_ms":"numeric"}`))
	if err != nil {
		tb.Fatalf("registry: %v", err)
	}
	return reg
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// spec is one generated observation message.
type spec struct {
	Attacker   string
	Primitive  string
	Ref        string
	TS         float64
	Value      string // raw JSON
	Confidence float64
}

func (s spec) body() []byte {
	b, err := json.Marshal(map[string]any{
		"id":            "obs-" + s.Attacker + "-" + s.Ref,
		"primitive":     s.Primitive,
		"value":         json.RawMessage(s.Value),
		"confidence":    s.Confidence,
		"window":        map[string]float64{"start_ts": s.TS - 30, "end_ts": s.TS},
		"source":        "behave-shell",
		"evidence_ref":  s.Ref,
		"v":             1,
		"ts":            s.TS,
		"attacker_uuid": s.Attacker,
	})
	if err != nil {
		panic(err) // test data only: every field is marshalable
	}
	return b
}

func messages(bodies [][]byte) []attribution.Message {
	out := make([]attribution.Message, len(bodies))
	for i, b := range bodies {
		out[i] = attribution.Message{ID: fmt.Sprintf("m-%05d", i), Body: b}
	}
	return out
}

// ---- value generators -------------------------------------------------

var categoricalPool = []string{`"typed"`, `"pasted"`, `null`, `true`, `false`, `1`, `"1"`, `2.5`, `[1,"a"]`, `{"k":"v"}`}

// equalityPool mixes texts that are one value under the reference's
// equality (true, 1, 1.0; false, 0, -0.0; 2^53 as integer and as float)
// with near misses that are not (2^53+1, "1", null).
var equalityPool = []string{`true`, `1`, `1.0`, `false`, `0`, `-0.0`, `0.0`, `9007199254740993`, `9007199254740992`,
	`9007199254740992.0`, `"1"`, `"0"`, `null`, `1e2`, `100`, `2.5`, `[true,0]`, `[1,-0.0]`}

// equalityNumbers is the part of equalityPool a numeric primitive accepts.
var equalityNumbers = []string{`true`, `1`, `1.0`, `false`, `0`, `-0.0`, `9007199254740993`, `9007199254740992.0`, `null`, `1e2`, `2.5`}

// categoricalValues draws a series of n values over 1–4 distinct values,
// in phases (constant, alternating, random) so every state word shows up.
func categoricalValues(rng *rand.Rand, n int) []string {
	return categoricalValuesFrom(rng, n, categoricalPool)
}

// categoricalValuesFrom is categoricalValues over another pool of texts.
func categoricalValuesFrom(rng *rand.Rand, n int, pool []string) []string {
	k := 1 + rng.IntN(4)
	perm := rng.Perm(len(pool))
	vals := make([]string, k)
	for i := range vals {
		vals[i] = pool[perm[i]]
	}
	out := make([]string, 0, n)
	for len(out) < n {
		phase := 2 + rng.IntN(7)
		a, b := vals[rng.IntN(k)], vals[rng.IntN(k)]
		mode := rng.IntN(3)
		for i := 0; i < phase && len(out) < n; i++ {
			switch mode {
			case 0:
				out = append(out, a)
			case 1:
				if i%2 == 0 {
					out = append(out, a)
				} else {
					out = append(out, b)
				}
			default:
				out = append(out, vals[rng.IntN(k)])
			}
		}
	}
	return out
}

// numericValues draws levels with noise, zeros, negatives, nulls and bools.
func numericValues(rng *rand.Rand, n int) []string {
	out := make([]string, 0, n)
	level := float64(rng.IntN(2000) - 500)
	for len(out) < n {
		switch r := rng.IntN(20); {
		case r == 0:
			out = append(out, "null")
		case r == 1:
			out = append(out, "true")
		case r == 2:
			out = append(out, "false")
		case r == 3:
			out = append(out, "0")
		case r == 4:
			level = float64(rng.IntN(4000) - 2000) // jump
			out = append(out, jsonNumber(level))
		case r < 8:
			out = append(out, jsonNumber(float64(rng.IntN(200)-100)/4))
		default:
			out = append(out, jsonNumber(level*(1+0.1*(rng.Float64()-0.5))))
		}
	}
	return out
}

func jsonNumber(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}

// hashValues draws from 1–distinctMax distinct hashes, with nulls.
func hashValues(rng *rand.Rand, n, distinctMax int) []string {
	return hashValuesOf(rng, n, 1+rng.IntN(distinctMax))
}

// drawFrom draws n texts of a pool at random.
func drawFrom(rng *rand.Rand, n int, pool []string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = pool[rng.IntN(len(pool))]
	}
	return out
}

// hashValuesOf draws from k hashes, with nulls; each of the k appears at
// least once when n leaves room for them.
func hashValuesOf(rng *rand.Rand, n, k int) []string {
	out := make([]string, n)
	for i := range out {
		j := rng.IntN(k)
		if i < k {
			j = i
		} else if rng.IntN(10) == 0 {
			out[i] = "null"
			continue
		}
		out[i] = fmt.Sprintf(`"%016x"`, uint64(j+1)*0x9e3779b97f4a7c15)
	}
	rng.Shuffle(n, func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// seriesTimes draws n ascending timestamps: small gaps for the windowed
// mergers, gaps around the hash window for hashes; some ties.
func seriesTimes(rng *rand.Rand, kind attribution.Kind, n int, start float64) []float64 {
	out := make([]float64, n)
	ts := start
	for i := range out {
		switch {
		case rng.IntN(8) == 0:
			// tie with the previous one
		case kind == attribution.Hash:
			ts += float64(rng.IntN(60000)) + float64(rng.IntN(1000))/1000
		default:
			ts += float64(rng.IntN(900)) + float64(rng.IntN(1000))/1000
		}
		out[i] = ts
	}
	return out
}

// ---- stream generator -------------------------------------------------

type streamOpts struct {
	Attackers  int
	MaxLen     int     // observations per series, at most
	Redeliver  float64 // share of exact redeliveries
	Amend      float64 // share of amendments
	Primitives []string
	// Alternating builds categorical series in long A/B and constant phases
	// so they enter and leave multi_actor.
	Alternating bool
	// Shuffle sets how far arrival order strays from ts order: 0 keeps it.
	Shuffle float64
	// Equality draws values from pools of texts that are equal as values
	// but not as JSON (true, 1, 1.0), with near misses.
	Equality bool
}

// genStream returns message bodies in arrival order.
func genStream(rng *rand.Rand, reg attribution.Registry, o streamOpts) [][]byte {
	var all []spec
	for a := range o.Attackers {
		attacker := fmt.Sprintf("att-%02d", a)
		base := 1.7e9 + float64(a)*1e4
		for _, prim := range o.Primitives {
			if !o.Alternating && rng.IntN(5) == 0 {
				continue // not every attacker shows every primitive
			}
			kind := reg.Kind(prim)
			n := 1 + rng.IntN(o.MaxLen)
			vals := o.values(rng, kind, n)
			times := seriesTimes(rng, kind, n, base)
			refs := rng.Perm(n) // ties in ts are broken by a ref unrelated to arrival
			for i := range n {
				all = append(all, spec{
					Attacker: attacker, Primitive: prim, Ref: fmt.Sprintf("shard:%s#s%04d", attacker, refs[i]),
					TS: times[i], Value: vals[i], Confidence: float64(rng.IntN(101)) / 100,
				})
			}
		}
	}
	// Arrival order: ts order with noise.
	keys := make([]float64, len(all))
	for i, s := range all {
		keys[i] = s.TS + o.Shuffle*rng.Float64()
	}
	idx := make([]int, len(all))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(i, j int) bool { return keys[idx[i]] < keys[idx[j]] })

	var out [][]byte
	var sent []spec
	for _, i := range idx {
		s := all[i]
		out = append(out, s.body())
		sent = append(sent, s)
		if rng.Float64() < o.Redeliver {
			out = append(out, sent[rng.IntN(len(sent))].body())
		}
		if rng.Float64() < o.Amend {
			a := sent[rng.IntN(len(sent))]
			switch rng.IntN(3) {
			case 0:
				a.TS += float64(rng.IntN(5000))
			case 1:
				a.Confidence = 1 - a.Confidence/2
			}
			a.Value = o.values(rng, reg.Kind(a.Primitive), 1)[0]
			out = append(out, a.body())
			sent = append(sent, a)
		}
	}
	return out
}

// values draws the values of one series of kind.
func (o streamOpts) values(rng *rand.Rand, kind attribution.Kind, n int) []string {
	switch {
	case o.Alternating:
		return alternatingValues(rng, n)
	case o.Equality && kind == attribution.Numeric:
		return drawFrom(rng, n, equalityNumbers)
	case o.Equality && kind == attribution.Hash:
		return drawFrom(rng, n, equalityPool)
	case o.Equality:
		return categoricalValuesFrom(rng, n, equalityPool)
	case kind == attribution.Numeric:
		return numericValues(rng, n)
	case kind == attribution.Hash:
		return hashValues(rng, n, 6)
	default:
		return categoricalValues(rng, n)
	}
}

// alternatingValues is A/B alternation and constant runs, in phases.
func alternatingValues(rng *rand.Rand, n int) []string {
	out := make([]string, 0, n)
	for len(out) < n {
		phase := 4 + rng.IntN(6)
		alt := rng.IntN(3) != 0
		c := []string{`"A"`, `"B"`}[rng.IntN(2)]
		for i := 0; i < phase && len(out) < n; i++ {
			switch {
			case !alt:
				out = append(out, c)
			case i%2 == 0:
				out = append(out, `"A"`)
			default:
				out = append(out, `"B"`)
			}
		}
	}
	return out
}

// ---- oracle -------------------------------------------------------------

// wantEvent is an event as published: its ID, type and detail.
type wantEvent struct {
	ID         string
	DetailType string
	Detail     string
}

func (e wantEvent) String() string { return e.DetailType + " " + e.ID + " " + e.Detail }

// oracle replays a stream by the written rules, recomputing every series
// from scratch with Merge: it is the specification the processor is checked
// against, independent of the incremental record, the outbox and the store.
type oracle struct {
	reg         attribution.Registry
	th          attribution.Thresholds
	stored      map[attribution.SeriesKey]map[string]attribution.Observation
	current     map[attribution.SeriesKey]attribution.State
	lastChange  map[attribution.SeriesKey]float64
	transitions map[attribution.SeriesKey]int64
	events      map[attribution.SeriesKey][]wantEvent
	flagged     map[string][]string
	fired       map[string][]string
	suspicions  map[string]int64
	// storedWith holds the events each stored observation caused, as the
	// store keeps them next to it.
	storedWith map[attribution.SeriesKey]map[string][]wantEvent
	// carried[i] are the events the processor publishes for message i:
	// those its observation caused, or, for an exact redelivery, those
	// stored with the observation (published again, same IDs).
	carried [][]wantEvent
}

func newOracle(reg attribution.Registry, th attribution.Thresholds) *oracle {
	return &oracle{
		reg: reg, th: th,
		stored:      make(map[attribution.SeriesKey]map[string]attribution.Observation),
		current:     make(map[attribution.SeriesKey]attribution.State),
		lastChange:  make(map[attribution.SeriesKey]float64),
		transitions: make(map[attribution.SeriesKey]int64),
		events:      make(map[attribution.SeriesKey][]wantEvent),
		flagged:     make(map[string][]string),
		fired:       make(map[string][]string),
		suspicions:  make(map[string]int64),
		storedWith:  make(map[attribution.SeriesKey]map[string][]wantEvent),
	}
}

func mustOracle(tb testing.TB, reg attribution.Registry, th attribution.Thresholds, bodies [][]byte) *oracle {
	tb.Helper()
	o := newOracle(reg, th)
	for i, b := range bodies {
		if err := o.apply(b); err != nil {
			tb.Fatalf("oracle: message %d: %v", i, err)
		}
	}
	return o
}

func (o *oracle) points(key attribution.SeriesKey) []attribution.Point {
	var pts []attribution.Point
	for _, obs := range o.stored[key] {
		pts = append(pts, obs.Point())
	}
	attribution.SortPoints(pts)
	return pts
}

func (o *oracle) apply(body []byte) error {
	obs, err := attribution.DecodeMessage(body)
	if err != nil {
		return err
	}
	kind := o.reg.Kind(obs.Primitive)
	if err := obs.Validate(kind); err != nil {
		return err
	}
	identity := attribution.StubIdentityID(obs.AttackerUUID)
	key := attribution.SeriesKey{IdentityUUID: identity, Primitive: obs.Primitive}
	if o.stored[key] == nil {
		o.stored[key] = make(map[string]attribution.Observation)
		o.storedWith[key] = make(map[string][]wantEvent)
	}
	if prev, ok := o.stored[key][obs.EvidenceRef]; ok && prev.Fingerprint() == obs.Fingerprint() {
		o.carried = append(o.carried, o.storedWith[key][obs.EvidenceRef]) // exact redelivery
		return nil
	}
	o.stored[key][obs.EvidenceRef] = obs
	caused := o.settle(kind, key, obs)
	o.events[key] = append(o.events[key], caused...)
	// An amendment carries the newest events of the observation it
	// replaces (the bus may not have taken them), then its own.
	replaced := o.storedWith[key][obs.EvidenceRef]
	carried := slices.Concat(replaced[max(0, len(replaced)-attribution.MaxCarriedEvents):], caused)
	o.storedWith[key][obs.EvidenceRef] = carried
	o.carried = append(o.carried, carried)
	return nil
}

// settle recomputes the series after obs was stored and returns the events
// this causes: a state_changed, and a multi_actor_suspected it raises.
func (o *oracle) settle(kind attribution.Kind, key attribution.SeriesKey, obs attribution.Observation) []wantEvent {
	identity := key.IdentityUUID
	next := attribution.Merge(kind, o.points(key), o.th)
	prior, had := o.current[key]
	o.current[key] = next
	if had && prior.State == next.State {
		return nil
	}
	o.transitions[key]++
	o.lastChange[key] = next.LastObservationTS
	ev := attribution.StateChanged{
		EventID:          attribution.EventID(attribution.EventStateChanged, key.String(), o.transitions[key]),
		Sequence:         o.transitions[key],
		IdentityUUID:     identity,
		AttackerUUID:     obs.AttackerUUID,
		Primitive:        obs.Primitive,
		NewState:         next.State,
		CurrentValue:     next.CurrentValue,
		Confidence:       next.Confidence,
		ObservationCount: next.ObservationCount,
		TS:               next.LastObservationTS,
	}
	if had {
		old := prior.State
		ev.OldState = &old
	}
	caused := []wantEvent{encodeEvent(attribution.EventStateChanged, ev.EventID, ev)}

	// Cross-primitive suspicion, by the written rule.
	set := slices.Clone(o.flagged[identity])
	i, in := slices.BinarySearch(set, obs.Primitive)
	switch {
	case next.State == attribution.StateMultiActor && !in:
		set = slices.Insert(set, i, obs.Primitive)
	case next.State != attribution.StateMultiActor && in:
		set = slices.Delete(set, i, i+1)
	}
	if slices.Equal(set, o.flagged[identity]) {
		return caused
	}
	o.flagged[identity] = set
	if len(set) < o.th.MultiActorMinPrimitives {
		o.fired[identity] = nil
		return caused
	}
	if slices.Equal(set, o.fired[identity]) {
		return caused
	}
	o.fired[identity] = slices.Clone(set)
	o.suspicions[identity]++
	s := attribution.MultiActorSuspected{
		EventID:         attribution.EventID(attribution.EventMultiActorSuspected, identity, o.suspicions[identity]),
		Sequence:        o.suspicions[identity],
		IdentityUUID:    identity,
		AttackerUUID:    obs.AttackerUUID,
		Primitives:      slices.Clone(set),
		EvidenceSummary: fmt.Sprintf("%d primitives flagged multi_actor", len(set)),
		Confidence:      o.th.MultiActorSuspectedScore,
		TS:              next.LastObservationTS,
	}
	return append(caused, encodeEvent(attribution.EventMultiActorSuspected, s.EventID, s))
}

func encodeEvent(detailType, id string, detail any) wantEvent {
	b, err := json.Marshal(detail)
	if err != nil {
		panic(err) // the details are plain structs
	}
	return wantEvent{ID: id, DetailType: detailType, Detail: string(b)}
}

// carriedBy returns the events the processor publishes for each message,
// by message ID; msgs must be the oracle's stream, in its order.
func (o *oracle) carriedBy(tb testing.TB, msgs []attribution.Message) map[string][]wantEvent {
	tb.Helper()
	if len(msgs) != len(o.carried) {
		tb.Fatalf("%d messages, the oracle applied %d", len(msgs), len(o.carried))
	}
	out := make(map[string][]wantEvent, len(msgs))
	for i, m := range msgs {
		out[m.ID] = o.carried[i]
	}
	return out
}

// byID returns every event of the stream by ID.
func (o *oracle) byID() map[string]wantEvent {
	out := make(map[string]wantEvent)
	for _, list := range o.events {
		for _, e := range list {
			out[e.ID] = e
		}
	}
	return out
}

func (o *oracle) suspicionCount() int {
	n := 0
	for _, c := range o.suspicions {
		n += int(c)
	}
	return n
}

// ---- fakes ----------------------------------------------------------------

// recorder is a Publisher that accepts every event and remembers it, with
// the call it came in.
type recorder struct {
	mu       sync.Mutex
	calls    int
	accepted []recorded
}

type recorded struct {
	Call  int
	Event attribution.Event
}

var _ attribution.Publisher = (*recorder)(nil)

func (r *recorder) Publish(_ context.Context, events []attribution.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	for _, e := range events {
		r.accepted = append(r.accepted, recorded{Call: r.calls, Event: e})
	}
	return nil
}

func (r *recorder) events() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.accepted)
}

func (r *recorder) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// wants returns the events as published, in order.
func wants(events []attribution.Event) []wantEvent {
	out := make([]wantEvent, len(events))
	for i, e := range events {
		out[i] = asWant(e)
	}
	return out
}

// eventsOf returns the events of recorded deliveries, in order.
func eventsOf(rs []recorded) []attribution.Event {
	out := make([]attribution.Event, len(rs))
	for i, r := range rs {
		out[i] = r.Event
	}
	return out
}

// notPublished returns the events of want the bus never took with their
// detail.
func notPublished(accepted []recorded, want []wantEvent) []wantEvent {
	took := make(map[wantEvent]bool, len(accepted))
	for _, r := range accepted {
		took[asWant(r.Event)] = true
	}
	var out []wantEvent
	for _, e := range want {
		if !took[e] {
			out = append(out, e)
		}
	}
	return out
}

// checkOffered checks what one Process call of batch offered the bus:
// what the batch's series owed it, and nothing else. Each offered event is
// an event of one of those series, with the clean run's detail, once per
// call; every event the batch's own observations caused is among them
// unless the bus took it before.
func checkOffered(tb testing.TB, name string, offered []attribution.Event, batch []attribution.Message, carried map[string][]wantEvent) {
	tb.Helper()
	series := make(map[attribution.SeriesKey]bool)
	for _, m := range batch {
		if d, err := attribution.Decode(m.Body); err == nil && d.Identity == nil && d.Ignored == "" {
			series[attribution.SeriesKey{IdentityUUID: attribution.StubIdentityID(d.Observation.AttackerUUID), Primitive: d.Observation.Primitive}] = true
		}
	}
	known := make(map[string]wantEvent)
	for _, list := range carried {
		for _, e := range list {
			known[e.ID] = e
		}
	}
	seen := make(map[string]bool)
	for _, e := range offered {
		w, ok := known[e.ID]
		switch {
		case !ok:
			tb.Errorf("%s: offered %v, which no observation caused", name, asWant(e))
		case asWant(e) != w:
			tb.Errorf("%s: offered\n %v\nwant\n %v", name, asWant(e), w)
		case seen[e.ID]:
			tb.Errorf("%s: offered %s twice in one call", name, e.ID)
		case e.DetailType == attribution.EventStateChanged && !series[seriesOfEvent(tb, e)]:
			tb.Errorf("%s: offered %v, of a series the batch does not touch", name, asWant(e))
		}
		seen[e.ID] = true
	}
}

func asWant(e attribution.Event) wantEvent {
	return wantEvent{ID: e.ID, DetailType: e.DetailType, Detail: string(e.Detail)}
}

// firstDeliveries keeps the first delivery of each event ID. A later one
// must be an exact copy (a redelivery: of a message whose observation is
// stored, or by two writers); one with another detail fails the test.
func firstDeliveries(tb testing.TB, events []recorded) []recorded {
	tb.Helper()
	first := make(map[string]string)
	var out []recorded
	for _, r := range events {
		detail, again := first[r.Event.ID]
		switch {
		case !again:
			first[r.Event.ID] = string(r.Event.Detail)
			out = append(out, r)
		case detail != string(r.Event.Detail):
			tb.Fatalf("event %s published again with another detail:\n%s\n%s", r.Event.ID, detail, r.Event.Detail)
		}
	}
	return out
}

// bySeries groups published events per series, in publication order, once
// each: a later delivery of an event must be an exact copy (a redelivery)
// and is left out. A state_changed event names its series; a
// multi_actor_suspected event is stored with the transition that raised
// it, so it follows that transition's event in the same Publish call.
func bySeries(tb testing.TB, events []recorded) map[attribution.SeriesKey][]wantEvent {
	tb.Helper()
	out := make(map[attribution.SeriesKey][]wantEvent)
	var last attribution.SeriesKey
	lastCall := -1
	for _, r := range firstDeliveries(tb, events) {
		e := r.Event
		switch e.DetailType {
		case attribution.EventStateChanged:
			var d attribution.StateChanged
			if err := json.Unmarshal(e.Detail, &d); err != nil {
				tb.Fatalf("event %s: %v", e.ID, err)
			}
			last = attribution.SeriesKey{IdentityUUID: d.IdentityUUID, Primitive: d.Primitive}
			lastCall = r.Call
		case attribution.EventMultiActorSuspected:
			if lastCall != r.Call {
				tb.Fatalf("multi_actor_suspected %s was published without the transition that raised it", e.ID)
			}
		default:
			tb.Fatalf("event %s has detail type %q", e.ID, e.DetailType)
		}
		out[last] = append(out[last], asWant(e))
	}
	return out
}

// countingMetrics is a Metrics fake.
type countingMetrics struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *countingMetrics) Add(name string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil {
		m.n = make(map[string]int)
	}
	m.n[name] += n
}

func (m *countingMetrics) get(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[name]
}

func newProcessor(store interface {
	attribution.Store
	attribution.Identities
}, pub attribution.Publisher, reg attribution.Registry, th attribution.Thresholds) *attribution.Processor {
	return &attribution.Processor{
		Store:       store,
		Identities:  store,
		Publisher:   pub,
		Registry:    reg,
		Thresholds:  th,
		Logger:      quietLogger(),
		Concurrency: 4,
		Sleep:       func(context.Context, time.Duration) {},
	}
}

// ---- comparisons ------------------------------------------------------------

func diffEvents(tb testing.TB, name string, got, want map[attribution.SeriesKey][]wantEvent) {
	tb.Helper()
	keys := make(map[attribution.SeriesKey]bool)
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	bad := 0
	for k := range keys {
		g, w := got[k], want[k]
		if slices.Equal(g, w) {
			continue
		}
		bad++
		if bad > 3 {
			continue
		}
		for i := range max(len(g), len(w)) {
			var ge, we wantEvent
			if i < len(g) {
				ge = g[i]
			}
			if i < len(w) {
				we = w[i]
			}
			if ge != we {
				tb.Errorf("%s: series %s event %d:\n got  %v\n want %v\n (got %d events, want %d)", name, k, i, ge, we, len(g), len(w))
				break
			}
		}
	}
	if bad > 3 {
		tb.Errorf("%s: %d series differ in all", name, bad)
	}
}

// checkRecords compares the stored records with the oracle's final
// states, and checks that no outbox was used.
func checkRecords(tb testing.TB, name string, store *memstore.Store, o *oracle) {
	tb.Helper()
	records := store.Records()
	seen := 0
	for _, r := range records {
		want, ok := o.current[r.Key]
		if !ok {
			tb.Errorf("%s: record %s the oracle never saw", name, r.Key)
			continue
		}
		seen++
		if r.Current == nil || *r.Current != want {
			tb.Errorf("%s: %s: current %+v, want %+v", name, r.Key, r.Current, want)
		}
		if r.Current != nil && r.Current.ObservationCount != len(o.stored[r.Key]) {
			tb.Errorf("%s: %s: observation_count %d, distinct observations %d", name, r.Key, r.Current.ObservationCount, len(o.stored[r.Key]))
		}
		if r.LastChangeTS != o.lastChange[r.Key] {
			tb.Errorf("%s: %s: last_change_ts %v, want %v", name, r.Key, r.LastChangeTS, o.lastChange[r.Key])
		}
		if r.Transitions != o.transitions[r.Key] {
			tb.Errorf("%s: %s: transitions %d, want %d", name, r.Key, r.Transitions, o.transitions[r.Key])
		}
		// What an outbox still holds are events of the series (the bus took
		// them; the series' next commit records that).
		for _, e := range r.Outbox {
			if w, ok := o.byID()[e.ID]; !ok || w != asWant(e) {
				tb.Errorf("%s: %s: outbox holds %v, not an event of the series", name, r.Key, asWant(e))
			}
		}
	}
	if seen != len(o.current) {
		tb.Errorf("%s: %d records, the oracle has %d series", name, seen, len(o.current))
	}
}

// recordSummary is what must not depend on how a stream was processed.
type recordSummary struct {
	Current      attribution.State
	LastChangeTS float64
	Transitions  int64
}

func summaries(store *memstore.Store) map[attribution.SeriesKey]recordSummary {
	out := make(map[attribution.SeriesKey]recordSummary)
	for _, r := range store.Records() {
		s := recordSummary{LastChangeTS: r.LastChangeTS, Transitions: r.Transitions}
		if r.Current != nil {
			s.Current = *r.Current
		}
		out[r.Key] = s
	}
	return out
}

// seriesOfEvent returns the series a state_changed event is about.
func seriesOfEvent(tb testing.TB, e attribution.Event) attribution.SeriesKey {
	tb.Helper()
	var d attribution.StateChanged
	if err := json.Unmarshal(e.Detail, &d); err != nil {
		tb.Fatalf("event %s: %v", e.ID, err)
	}
	return attribution.SeriesKey{IdentityUUID: d.IdentityUUID, Primitive: d.Primitive}
}

// checkEveryTransitionPublished checks that the bus took an event for each
// transition and suspicion the records count, and for no other. With the
// unbroken chains checkSuspicionRule checks, none was lost or invented,
// whatever order they were published in.
func checkEveryTransitionPublished(tb testing.TB, name string, store *memstore.Store, events []recorded) {
	tb.Helper()
	transitions := make(map[attribution.SeriesKey]int64)
	suspicions := make(map[string]int64)
	for _, r := range firstDeliveries(tb, events) {
		switch r.Event.DetailType {
		case attribution.EventStateChanged:
			transitions[seriesOfEvent(tb, r.Event)]++
		case attribution.EventMultiActorSuspected:
			var d attribution.MultiActorSuspected
			if err := json.Unmarshal(r.Event.Detail, &d); err != nil {
				tb.Fatalf("event %s: %v", r.Event.ID, err)
			}
			suspicions[d.IdentityUUID]++
		}
	}
	identities := make(map[string]bool)
	for _, r := range store.Records() {
		if transitions[r.Key] != r.Transitions {
			tb.Errorf("%s: %s: %d state_changed events published, the record made %d transitions", name, r.Key, transitions[r.Key], r.Transitions)
		}
		delete(transitions, r.Key)
		identities[r.Key.IdentityUUID] = true
	}
	for k, n := range transitions {
		tb.Errorf("%s: %d state_changed events published about %s, which has no record", name, n, k)
	}
	for identity := range identities {
		rec, err := store.LoadIdentity(context.Background(), identity, true)
		if err != nil {
			tb.Fatal(err)
		}
		if suspicions[identity] != rec.Suspicions {
			tb.Errorf("%s: identity %s: %d suspicions published, the record raised %d", name, identity, suspicions[identity], rec.Suspicions)
		}
		delete(suspicions, identity)
	}
	for identity, n := range suspicions {
		tb.Errorf("%s: %d suspicions published about identity %s, which has no series", name, n, identity)
	}
}
