package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/aws/aws-lambda-go/events"

	"decnet-attribution/internal/attribution"
)

// Primitive is one primitive of the benchmark catalogue.
type Primitive struct {
	Name string
	Kind attribution.Kind
}

// catalogue lists the ~40 primitives one session emits: the built-in
// BEHAVE catalogue first, then further primitives of the kinds real
// extractors produce (mostly categorical levels, some numeric
// measurements, a few fingerprints).
var catalogue = []Primitive{
	{"motor.input_modality", attribution.Categorical},
	{"motor.paste_burst_rate", attribution.Categorical},
	{"motor.typing_cadence", attribution.Categorical},
	{"motor.correction_rate", attribution.Categorical},
	{"motor.digraph_simhash", attribution.Hash},
	{"cognitive.feedback_loop_engagement", attribution.Categorical},
	{"cognitive.command_planning", attribution.Categorical},
	{"cognitive.error_recovery", attribution.Categorical},
	{"environmental.shell_familiarity", attribution.Categorical},
	{"environmental.locale", attribution.Categorical},
	{"operational.tool_transfer_method", attribution.Categorical},
	{"operational.persistence_habit", attribution.Categorical},
	{"temporal.session_cadence", attribution.Categorical},
	{"temporal.active_hours", attribution.Categorical},
	{"emotional_valence.frustration", attribution.Categorical},
	{"toolchain.tls.jarm_server", attribution.Hash},
	{"toolchain.ssh.hassh_client", attribution.Hash},
	{"toolchain.c2.beacon_interval_ms", attribution.Numeric},
	{"toolchain.shell", attribution.Categorical},
	{"toolchain.editor", attribution.Categorical},
	{"toolchain.download_client", attribution.Categorical},
	{"toolchain.scanner", attribution.Categorical},
	{"toolchain.archive_tool", attribution.Categorical},
	{"toolchain.http.ja4h", attribution.Hash},
	{"toolchain.tls.ja3_client", attribution.Hash},
	{"toolchain.c2.jitter_pct", attribution.Numeric},
	{"operational.cleanup_habit", attribution.Categorical},
	{"operational.recon_order", attribution.Categorical},
	{"operational.privilege_path", attribution.Categorical},
	{"operational.commands_per_session", attribution.Numeric},
	{"environmental.terminal_size", attribution.Categorical},
	{"environmental.keyboard_layout", attribution.Categorical},
	{"environmental.timezone_offset", attribution.Categorical},
	{"cognitive.help_usage", attribution.Categorical},
	{"cognitive.tab_completion", attribution.Categorical},
	{"temporal.session_length_band", attribution.Categorical},
	{"temporal.inter_command_ms", attribution.Numeric},
	{"motor.keystroke_interval_ms", attribution.Numeric},
	{"motor.paste_size_bytes", attribution.Numeric},
	{"motor.scroll_behaviour", attribution.Categorical},
}

// Catalogue returns the primitives a session emits, in emission order.
func Catalogue() []Primitive {
	return append([]Primitive(nil), catalogue...)
}

// RegistryOverrides returns the ATTRIBUTION_REGISTRY value that gives
// every catalogue primitive its kind where the built-in registry does not
// already.
func RegistryOverrides() string {
	builtin := attribution.BuiltinRegistry()
	over := map[string]string{}
	for _, p := range catalogue {
		if builtin.Kind(p.Name) != p.Kind {
			over[p.Name] = string(p.Kind)
		}
	}
	b, _ := json.Marshal(over) // a map of strings always encodes
	return string(b)
}

// categoricalLevels are the values categorical primitives take.
var categoricalLevels = [][]string{
	{"typed", "pasted", "mixed"},
	{"low", "medium", "high"},
	{"none", "occasional", "frequent"},
	{"bash", "zsh", "sh", "fish"},
}

// Workload generates the observations of a group of attackers. Values
// depend on the attacker's index, the primitive and the session, never on
// the group, so two groups see identical series: the designs compared run
// on separate groups and still process the same values.
type Workload struct {
	// Group names the attackers: att-<Group><index>. One or two ASCII
	// letters keep the item sizes of all groups equal.
	Group string
	// Noise is the probability that an observation departs from its
	// series' usual value (a categorical outlier, a numeric spike, an
	// unseen hash). Departures cause the occasional state transition.
	Noise float64
	// Start is the end of session 0, epoch seconds; sessions end Gap
	// seconds apart.
	Start float64
	Gap   float64
}

// NewWorkload returns a workload for group with the benchmark's defaults:
// a session an hour from 2024-04-25, 3% of observations departing.
func NewWorkload(group string) Workload {
	return Workload{Group: group, Noise: 0.03, Start: 1714000000, Gap: 3600}
}

// Series names one (attacker, primitive) series of a workload by indices.
type Series struct {
	Attacker  int
	Primitive int
}

// Attacker returns the attacker_uuid of attacker index i.
func (w Workload) Attacker(i int) string {
	return fmt.Sprintf("att-%s%03d", w.Group, i)
}

// Identity returns the identity the attacker of index i gets on first
// sight.
func (w Workload) Identity(i int) string {
	return attribution.StubIdentityID(w.Attacker(i))
}

// Key returns the series key of s.
func (w Workload) Key(s Series) attribution.SeriesKey {
	return attribution.SeriesKey{IdentityUUID: w.Identity(s.Attacker), Primitive: catalogue[s.Primitive].Name}
}

// Observation returns the observation of series s in the given session
// (sessions count from 1).
func (w Workload) Observation(s Series, session int) attribution.Observation {
	prim := catalogue[s.Primitive]
	attacker := w.Attacker(s.Attacker)
	r := newRand(uint64(s.Attacker), uint64(s.Primitive), uint64(session))
	ts := w.Start + float64(session)*w.Gap + float64(r.intn(600))/10
	conf := float64(500+r.intn(500)) / 1000
	depart := r.float() < w.Noise
	var v attribution.Value
	switch prim.Kind {
	case attribution.Numeric:
		base := 40.0 * float64(1+(s.Primitive*7+s.Attacker*3)%25)
		x := base * (1 + 0.05*(r.float()*2-1))
		if depart {
			x *= 2.5
		}
		v = attribution.Value(strconv.FormatFloat(math.Round(x), 'f', -1, 64))
	case attribution.Hash:
		epoch := uint64(session / 500) // the tool is updated now and then
		h := newRand(uint64(s.Attacker), uint64(s.Primitive), 1<<40+epoch).next()
		if depart {
			h = r.next()
		}
		v = attribution.Value(fmt.Sprintf(`"%016x"`, h))
	default:
		levels := categoricalLevels[s.Primitive%len(categoricalLevels)]
		i := (s.Attacker + s.Primitive) % len(levels)
		if depart {
			i = (i + 1 + r.intn(len(levels)-1)) % len(levels)
		}
		v = attribution.Value(strconv.Quote(levels[i]))
	}
	one := 1
	return attribution.Observation{
		ID:           fmt.Sprintf("obs-%s-%s-%d", attacker, prim.Name, session),
		Primitive:    prim.Name,
		Value:        v,
		Confidence:   &conf,
		Window:       &attribution.Window{StartTS: ts - 30, EndTS: ts},
		Source:       "behave-shell",
		EvidenceRef:  fmt.Sprintf("shard:%s#s%06d", attacker, session),
		V:            &one,
		TS:           ts,
		AttackerUUID: attacker,
	}
}

// SessionSeries returns the series a batch of b observations of the
// session pattern covers, in batch order: every primitive of attacker 0,
// then of attacker 1, and so on, cut at b.
func SessionSeries(b int) []Series {
	out := make([]Series, 0, b)
	for i := 0; len(out) < b; i++ {
		out = append(out, Series{Attacker: i / len(catalogue), Primitive: i % len(catalogue)})
	}
	return out
}

// SessionBatch returns a batch of b observations as sessions end: the
// given session of attacker 0 emits one observation for each of the ~40
// primitives, then the same session of attacker 1, and so on; the batch
// holds the first b. So each (identity, primitive) gets one observation.
func (w Workload) SessionBatch(b, session int) []attribution.Observation {
	out := make([]attribution.Observation, 0, b)
	for _, s := range SessionSeries(b) {
		out = append(out, w.Observation(s, session))
	}
	return out
}

// BurstSeries returns the series of a burst batch of b observations with
// perSeries observations per series (b must be a multiple of perSeries):
// the first primitivesPerAttacker primitives of attacker 0, then of
// attacker 1, and so on.
func BurstSeries(b, perSeries, primitivesPerAttacker int) []Series {
	n := b / perSeries
	out := make([]Series, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, Series{Attacker: i / primitivesPerAttacker, Primitive: i % primitivesPerAttacker})
	}
	return out
}

// BurstBatch returns b observations in which each series gets perSeries
// consecutive sessions, from firstSession on: a backlog, or several short
// sessions of one attacker ending within one batching window. Each
// attacker contributes primitivesPerAttacker primitives.
func (w Workload) BurstBatch(b, perSeries, primitivesPerAttacker, firstSession int) []attribution.Observation {
	out := make([]attribution.Observation, 0, b)
	for _, s := range BurstSeries(b, perSeries, primitivesPerAttacker) {
		for k := 0; k < perSeries; k++ {
			out = append(out, w.Observation(s, firstSession+k))
		}
	}
	return out
}

// SQSEvent wraps observations as the SQS event the function receives.
func SQSEvent(obs []attribution.Observation, queueARN string) (events.SQSEvent, error) {
	ev := events.SQSEvent{Records: make([]events.SQSMessage, len(obs))}
	for i, o := range obs {
		body, err := json.Marshal(o)
		if err != nil {
			return ev, fmt.Errorf("encode observation %s: %w", o.ID, err)
		}
		ev.Records[i] = events.SQSMessage{
			MessageId:      fmt.Sprintf("msg-%s-%s", o.AttackerUUID, o.ID),
			ReceiptHandle:  "rh-" + o.ID,
			Body:           string(body),
			Attributes:     map[string]string{"ApproximateReceiveCount": "1", "SentTimestamp": strconv.FormatInt(int64(o.TS*1000), 10)},
			EventSource:    "aws:sqs",
			EventSourceARN: queueARN,
			AWSRegion:      "us-east-1",
		}
	}
	return ev, nil
}

// History returns the points of sessions 1..h of series s, in series
// order.
func (w Workload) History(s Series, h int) []attribution.Observation {
	out := make([]attribution.Observation, h)
	for i := range out {
		out[i] = w.Observation(s, i+1)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Point().Before(out[j].Point()) })
	return out
}

// rnd is a small deterministic generator (splitmix64) seeded by the
// indices of what it generates, so every value is reproducible alone.
type rnd struct{ s uint64 }

func newRand(a, b, c uint64) *rnd {
	return &rnd{s: a*0x9e3779b97f4a7c15 ^ b*0xbf58476d1ce4e5b9 ^ c*0x94d049bb133111eb ^ 0x2545f4914f6cdd1d}
}

func (r *rnd) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *rnd) intn(n int) int { return int(r.next() % uint64(n)) }

func (r *rnd) float() float64 { return float64(r.next()>>11) / (1 << 53) }
