package chaos

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"

	"decnet-attribution/internal/attribution"
)

// StreamConfig describes a generated observation stream.
type StreamConfig struct {
	Seed uint64
	// Observations is the number of distinct observations (natural keys).
	Observations int
	// Attackers is how many attackers the observations are about, Hot of
	// them drawing HotShare of all observations.
	Attackers int
	Hot       int
	HotShare  float64
	// Duplicates is the share of extra sends of a message already sent
	// (producer redeliveries), placed after the original.
	Duplicates float64
	// Amendments is the number of messages re-sending a key with new
	// content (last write wins).
	Amendments int
	// Malformed is the number of bad messages, cycling through BadInputs.
	Malformed int
	// Wrapped is the share of valid messages sent inside an EventBridge
	// event or an SNS notification.
	Wrapped float64
	// ShuffleWindow shuffles arrival within windows of that many messages;
	// LateShare of the messages are moved much later still.
	ShuffleWindow int
	LateShare     float64
	// Identities mixes DECNET's identity events into the stream.
	Identities IdentityConfig
}

// MessageKind says what a sent message is.
type MessageKind int

// Kinds of sent messages.
const (
	KindOriginal MessageKind = iota
	KindDuplicate
	KindAmendment
	KindMalformed
	// KindIdentity is an identity event of DECNET's clusterer (its repeats
	// are KindDuplicate).
	KindIdentity
)

func (k MessageKind) String() string {
	return [...]string{"original", "duplicate", "amendment", "malformed", "identity"}[k]
}

// Message is one message of a stream.
type Message struct {
	Body string
	Kind MessageKind
	// Key is the natural key of a valid message.
	Key ObservationKey
	// Class is the bad input class of a malformed message.
	Class string
	// Topic and EventID are those of an identity event (and its repeats).
	Topic, EventID string
}

// ObservationKey is the natural key of an observation, with its attacker.
type ObservationKey struct {
	Attacker    string
	Primitive   string
	EvidenceRef string
}

// Stream is a generated stream in send order.
type Stream struct {
	Messages []Message
	// clusterer published the stream's identity events; nil without any.
	clusterer *clusterer
}

// Primitives the generator uses: categorical ones (two of them alternate
// for hot attackers, to raise multi_actor and the suspicion), a numeric
// and a hash one.
var streamPrimitives = []struct {
	name string
	kind attribution.Kind
}{
	{"motor.input_modality", attribution.Categorical},
	{"environmental.locale", attribution.Categorical},
	{"operational.tool_transfer_method", attribution.Categorical},
	{"toolchain.c2.beacon_interval_ms", attribution.Numeric},
	{"motor.digraph_simhash", attribution.Hash},
}

var categoricalValues = map[string][]any{
	"motor.input_modality":             {"typed", "pasted", "scripted"},
	"environmental.locale":             {"en_US", "ru_RU", "zh_CN"},
	"operational.tool_transfer_method": {"wget", "curl", "scp"},
}

// Counts summarises a stream.
type Counts struct {
	Messages, Originals, Duplicates, Amendments, Malformed, Wrapped int
	Attackers, Series                                               int
	// IdentityEvents counts the distinct identity events by topic;
	// IdentityRepeats the extra sends of one.
	IdentityEvents  map[string]int
	IdentityRepeats int
}

// Counts returns the stream's figures.
func (s *Stream) Counts() Counts {
	var c Counts
	attackers := map[string]bool{}
	series := map[[2]string]bool{}
	events := map[string]bool{}
	for _, m := range s.Messages {
		c.Messages++
		if m.EventID != "" {
			if events[m.EventID] {
				c.IdentityRepeats++
			} else {
				events[m.EventID] = true
				if c.IdentityEvents == nil {
					c.IdentityEvents = map[string]int{}
				}
				c.IdentityEvents[m.Topic]++
			}
			continue
		}
		switch m.Kind {
		case KindOriginal:
			c.Originals++
		case KindDuplicate:
			c.Duplicates++
		case KindAmendment:
			c.Amendments++
		case KindMalformed:
			c.Malformed++
		}
		if m.Kind != KindMalformed {
			attackers[m.Key.Attacker] = true
			series[[2]string{m.Key.Attacker, m.Key.Primitive}] = true
			if len(m.Body) > 0 && m.Body[0] == '{' && !isPlainEnvelope(m.Body) {
				c.Wrapped++
			}
		}
	}
	c.Attackers, c.Series = len(attackers), len(series)
	return c
}

func isPlainEnvelope(body string) bool {
	var probe struct {
		AttackerUUID *string `json:"attacker_uuid"`
	}
	return json.Unmarshal([]byte(body), &probe) == nil && probe.AttackerUUID != nil
}

// series is the value process of one (attacker, primitive).
type series struct {
	kind   attribution.Kind
	hot    bool
	regime int // categorical: 0 stable, 1 alternate, 2 mixed; numeric: 0 stable, 1 wild
	left   int // observations before the regime changes
	value  int // index of the current categorical value / hash counter
	other  int
	flip   bool
	mean   float64
	n      int
}

// Generate builds a stream. The same config gives the same stream.
func Generate(cfg StreamConfig) *Stream {
	r := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	attackers := make([]string, cfg.Attackers)
	for i := range attackers {
		prefix := "att"
		if i < cfg.Hot {
			prefix = "hot"
		}
		attackers[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	clock := make([]float64, cfg.Attackers)
	sessions := make([]int, cfg.Attackers)
	for i := range clock {
		clock[i] = 1714000000 + float64(r.IntN(86400))
	}
	state := map[[2]string]*series{}
	var ordered []Message
	bodies := map[ObservationKey]string{}
	for len(ordered) < cfg.Observations {
		a := pickAttacker(r, cfg)
		clock[a] += float64(30+r.IntN(900)) + float64(r.IntN(1000))/1000
		if r.IntN(20) == 0 {
			clock[a] -= float64(30 + r.IntN(60)) // an out-of-order session end, sometimes a tie
		}
		sessions[a]++
		ts := math.Round(clock[a]*1000) / 1000
		ref := fmt.Sprintf("shard:%s#s%05d", attackers[a], sessions[a])
		n := 1 + r.IntN(3)
		for _, pi := range r.Perm(len(streamPrimitives))[:n] {
			if len(ordered) >= cfg.Observations {
				break
			}
			p := streamPrimitives[pi]
			sk := [2]string{attackers[a], p.name}
			st := state[sk]
			if st == nil {
				st = &series{kind: p.kind, hot: a < cfg.Hot, mean: float64(200 + r.IntN(5000))}
				state[sk] = st
			}
			key := ObservationKey{Attacker: attackers[a], Primitive: p.name, EvidenceRef: ref}
			body := envelope(key, st.next(r, p.name), ts, r)
			bodies[key] = body
			ordered = append(ordered, Message{Body: wrap(body, cfg.Wrapped, r), Kind: KindOriginal, Key: key})
		}
	}
	var world *clusterer
	if cfg.Identities.Events > 0 {
		world = newClusterer(cfg.Seed, r)
		for range cfg.Identities.Events {
			world.step(attackers, cfg.Hot)
		}
		ordered = interleave(ordered, world.events, r)
	}
	ordered = shuffleWindows(ordered, cfg.ShuffleWindow, r)
	ordered = moveLate(ordered, cfg.LateShare, r)

	// Amendments: same key, new value, sent after the original.
	for i := 0; i < cfg.Amendments && len(ordered) > 0; i++ {
		orig := ordered[r.IntN(len(ordered))]
		if orig.Kind != KindOriginal {
			continue
		}
		var env map[string]any
		_ = json.Unmarshal([]byte(bodies[orig.Key]), &env)
		env["value"] = amendedValue(env["value"], orig.Key.Primitive, r)
		env["id"] = fmt.Sprint(env["id"], "-amended")
		m := Message{Body: mustJSON(env), Kind: KindAmendment, Key: orig.Key}
		ordered = insertAfter(ordered, indexOf(ordered, orig), m, r)
	}
	// Duplicates: an exact copy of a message already sent, later.
	dups := int(math.Round(cfg.Duplicates * float64(len(ordered))))
	for i := 0; i < dups; i++ {
		at := r.IntN(len(ordered))
		m := ordered[at]
		m.Kind = KindDuplicate
		ordered = insertAfter(ordered, at, m, r)
	}
	// Malformed messages, anywhere.
	bad := BadInputs()
	for i := 0; i < cfg.Malformed; i++ {
		b := bad[i%len(bad)]
		m := Message{Body: b.Body(fmt.Sprintf("bad-%d-%d", cfg.Seed, i)), Kind: KindMalformed, Class: b.Class}
		at := r.IntN(len(ordered) + 1)
		ordered = append(ordered[:at], append([]Message{m}, ordered[at:]...)...)
	}
	return &Stream{Messages: ordered, clusterer: world}
}

func pickAttacker(r *rand.Rand, cfg StreamConfig) int {
	if cfg.Hot > 0 && (cfg.Hot == cfg.Attackers || r.Float64() < cfg.HotShare) {
		return r.IntN(cfg.Hot)
	}
	return cfg.Hot + r.IntN(cfg.Attackers-cfg.Hot)
}

// next draws the series' next value.
func (s *series) next(r *rand.Rand, primitive string) any {
	s.n++
	if s.left <= 0 {
		s.left = 3 + r.IntN(12)
		switch s.kind {
		case attribution.Categorical:
			// Hot attackers alternate often: two operators on one host.
			weights := []int{5, 2, 1}
			if s.hot {
				weights = []int{3, 5, 1}
			}
			s.regime = weighted(r, weights)
			s.other = s.value
			for s.other == s.value {
				s.other = r.IntN(3)
			}
			if s.regime == 0 && r.IntN(2) == 0 {
				s.value = s.other // drift to another value
			}
		case attribution.Numeric:
			s.regime = weighted(r, []int{6, 1})
			if r.IntN(3) == 0 {
				s.mean *= []float64{0.5, 2, 1.5}[r.IntN(3)]
			}
		case attribution.Hash:
			if r.IntN(3) == 0 {
				s.value++
			}
		}
	}
	s.left--
	switch s.kind {
	case attribution.Categorical:
		vals := categoricalValues[primitive]
		switch s.regime {
		case 1:
			s.flip = !s.flip
			if s.flip {
				return vals[s.other]
			}
			return vals[s.value]
		case 2:
			return vals[r.IntN(3)]
		}
		if r.IntN(10) == 0 {
			return vals[s.other]
		}
		return vals[s.value]
	case attribution.Numeric:
		if s.regime == 1 {
			return math.Round(s.mean * []float64{0.01, 10, 0.2, 30}[r.IntN(4)])
		}
		switch r.IntN(40) {
		case 0:
			return nil // null reads as 0
		case 1:
			return true // reads as 1
		}
		return math.Round(s.mean*(1+0.05*r.NormFloat64())*10) / 10
	default:
		if r.IntN(25) == 0 {
			return nil
		}
		return fmt.Sprintf("%016x", uint64(s.value)*0x9e3779b97f4a7c15^uint64(len(primitive)))
	}
}

func weighted(r *rand.Rand, w []int) int {
	total := 0
	for _, x := range w {
		total += x
	}
	n := r.IntN(total)
	for i, x := range w {
		if n < x {
			return i
		}
		n -= x
	}
	return len(w) - 1
}

func amendedValue(v any, primitive string, r *rand.Rand) any {
	switch primitive {
	case "toolchain.c2.beacon_interval_ms":
		f, _ := v.(float64)
		return f + 1 + float64(r.IntN(500))
	case "motor.digraph_simhash":
		return fmt.Sprintf("%016x", r.Uint64())
	}
	vals := categoricalValues[primitive]
	for {
		if c := vals[r.IntN(len(vals))]; c != v {
			return c
		}
	}
}

func envelope(k ObservationKey, value any, ts float64, r *rand.Rand) string {
	conf := math.Round((0.5+r.Float64()/2)*100) / 100
	return mustJSON(map[string]any{
		"id":            "obs-" + k.EvidenceRef + "-" + k.Primitive,
		"primitive":     k.Primitive,
		"value":         value,
		"confidence":    conf,
		"window":        map[string]float64{"start_ts": ts - 30, "end_ts": ts},
		"source":        "behave-shell",
		"evidence_ref":  k.EvidenceRef,
		"v":             1,
		"ts":            ts,
		"attacker_uuid": k.Attacker,
	})
}

// wrap puts a share of the bodies in an EventBridge event or an SNS
// notification, as the function also accepts them.
func wrap(body string, share float64, r *rand.Rand) string {
	if r.Float64() >= share {
		return body
	}
	if r.IntN(2) == 0 {
		return mustJSON(map[string]any{
			"version": "0", "id": strconv.FormatUint(r.Uint64(), 16), "detail-type": "behave.observation",
			"source": "decnet.behave", "detail": json.RawMessage(body),
		})
	}
	return mustJSON(map[string]any{"Type": "Notification", "MessageId": strconv.FormatUint(r.Uint64(), 16), "Message": body})
}

func shuffleWindows(ms []Message, w int, r *rand.Rand) []Message {
	if w <= 1 {
		return ms
	}
	for start := 0; start < len(ms); start += w {
		end := min(start+w, len(ms))
		r.Shuffle(end-start, func(i, j int) { ms[start+i], ms[start+j] = ms[start+j], ms[start+i] })
	}
	return ms
}

func moveLate(ms []Message, share float64, r *rand.Rand) []Message {
	n := int(share * float64(len(ms)))
	for i := 0; i < n; i++ {
		from := r.IntN(len(ms))
		m := ms[from]
		ms = append(ms[:from], ms[from+1:]...)
		to := from + (len(ms)-from)/2 + r.IntN((len(ms)-from)/2+1)
		to = min(to, len(ms))
		ms = append(ms[:to], append([]Message{m}, ms[to:]...)...)
	}
	return ms
}

func insertAfter(ms []Message, at int, m Message, r *rand.Rand) []Message {
	to := at + 1 + r.IntN(len(ms)-at)
	return append(ms[:to], append([]Message{m}, ms[to:]...)...)
}

func indexOf(ms []Message, m Message) int {
	for i := range ms {
		if ms[i].Body == m.Body && ms[i].Kind == m.Kind {
			return i
		}
	}
	return len(ms) - 1
}

// bodiesOf returns the stream's bodies in send order.
func bodiesOf(s *Stream) []string {
	out := make([]string, len(s.Messages))
	for i, m := range s.Messages {
		out[i] = m.Body
	}
	return out
}
