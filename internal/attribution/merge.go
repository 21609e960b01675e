package attribution

import (
	"math"
	"sort"
)

// The five state words.
const (
	StateUnknown    = "unknown"
	StateStable     = "stable"
	StateDrifting   = "drifting"
	StateConflicted = "conflicted"
	StateMultiActor = "multi_actor"
)

// Point is one observation as the mergers see it.
type Point struct {
	TS    float64 `json:"t"`
	Ref   string  `json:"r"`
	Value Value   `json:"v"`
}

// Before reports whether p comes before q in series order: ascending ts,
// ties broken by evidence_ref.
func (p Point) Before(q Point) bool {
	if p.TS != q.TS {
		return p.TS < q.TS
	}
	return p.Ref < q.Ref
}

// SortPoints puts points in series order.
func SortPoints(points []Point) {
	sort.Slice(points, func(i, j int) bool { return points[i].Before(points[j]) })
}

// State is a merger's verdict on one (identity, primitive) series.
type State struct {
	State             string  `json:"state"`
	CurrentValue      Value   `json:"current_value"`
	Confidence        float64 `json:"confidence"`
	ObservationCount  int     `json:"observation_count"`
	LastObservationTS float64 `json:"last_observation_ts"`
}

// Merge runs the merger of kind over a whole series, given in series order.
// It is the reference computation; Series gives the same answers
// incrementally.
func Merge(kind Kind, points []Point, t Thresholds) State {
	n := len(points)
	if n == 0 {
		return State{State: StateUnknown, CurrentValue: Null}
	}
	if kind == Hash {
		last := points[n-1]
		start := last.TS - t.HashWindowSeconds
		distinct := make(map[Value]struct{})
		for _, p := range points {
			if p.TS >= start && !p.Value.IsNull() {
				distinct[p.Value.Class()] = struct{}{}
			}
		}
		return mergeHash(n, last, len(distinct), t)
	}
	tail := points
	if len(tail) > 2*t.Window {
		tail = tail[len(tail)-2*t.Window:]
	}
	return mergeTail(kind, n, tail, t)
}

// mergeTail computes a categorical or numeric state from the series length
// and its last (up to) 2N points, which is all these mergers look at.
func mergeTail(kind Kind, n int, tail []Point, t Thresholds) State {
	last := tail[len(tail)-1]
	recent, older := splitWindows(tail, t.Window)
	if kind == Numeric {
		return mergeNumeric(n, last, recent, older, t)
	}
	return mergeCategorical(n, last, recent, older, t)
}

func splitWindows(tail []Point, window int) (recent, older []Point) {
	cut := len(tail) - window
	if cut <= 0 {
		return tail, nil
	}
	older = tail[:cut]
	if len(older) > window {
		older = older[len(older)-window:]
	}
	return tail[cut:], older
}

func mergeCategorical(n int, last Point, recent, older []Point, t Thresholds) State {
	s := State{ObservationCount: n, LastObservationTS: last.TS, CurrentValue: last.Value}
	if n < t.MinObservations {
		s.State = StateUnknown
		return s
	}
	top, topCount := majority(recent)
	s.Confidence = float64(topCount) / float64(len(recent))
	if topCount < min(t.CategoricalMajority, len(recent)) {
		if alternates(recent) {
			s.State = StateMultiActor
			s.Confidence = math.Min(s.Confidence, t.MultiActorConfidenceCap)
		} else {
			s.State = StateConflicted
		}
		return s
	}
	s.CurrentValue = top
	s.State = StateStable
	if len(older) > 0 {
		olderTop, olderCount := majority(older)
		if olderCount < min(t.CategoricalMajority, len(older)) || !olderTop.Equal(top) {
			s.State = StateDrifting
		}
	}
	return s
}

// majority returns the most frequent value of a window, counted by
// equality class, as its first occurrence; on a tie, the class that appears
// first wins.
func majority(window []Point) (Value, int) {
	classes := make([]Value, len(window))
	counts := make(map[Value]int, len(window))
	for i, p := range window {
		classes[i] = p.Value.Class()
		counts[classes[i]]++
	}
	var top Value
	best := 0
	for i, p := range window {
		if c := counts[classes[i]]; c > best {
			top, best = p.Value, c
		}
	}
	return top, best
}

// alternates reports the A-B-A-B pattern that suggests two operators taking
// turns: at least 4 values, exactly two distinct, and flips outnumbering
// repeats at least two to one.
func alternates(window []Point) bool {
	if len(window) < 4 {
		return false
	}
	first := window[0].Value.Class()
	second, seen := Value(""), false
	flips := 0
	previous := first
	for _, p := range window {
		class := p.Value.Class()
		if class != first {
			if !seen {
				second, seen = class, true
			} else if class != second {
				return false
			}
		}
		if class != previous {
			flips++
		}
		previous = class
	}
	if !seen {
		return false
	}
	repeats := len(window) - 1 - flips
	return flips >= 2*max(repeats, 1)
}

func mergeNumeric(n int, last Point, recent, older []Point, t Thresholds) State {
	s := State{ObservationCount: n, LastObservationTS: last.TS}
	if n < t.MinObservations {
		f, _ := last.Value.Float()
		s.State, s.CurrentValue = StateUnknown, FloatValue(f)
		return s
	}
	values := floats(recent)
	mean := ewma(values, t.NumericAlpha)
	cv := coefficientOfVariation(values, mean)
	s.CurrentValue = FloatValue(mean)
	if cv > t.NumericConflictCV {
		s.State, s.Confidence = StateConflicted, 0.5
		return s
	}
	s.State = StateStable
	s.Confidence = math.Max(0, 1-math.Min(cv, 1))
	if len(older) > 0 {
		old := ewma(floats(older), t.NumericAlpha)
		denom := math.Abs(old)
		if old == 0 {
			denom = 1
		}
		if math.Abs(mean-old)/denom >= t.NumericDriftShift {
			s.State = StateDrifting
		}
	}
	return s
}

func floats(points []Point) []float64 {
	out := make([]float64, len(points))
	for i, p := range points {
		out[i], _ = p.Value.Float() // validated on intake
	}
	return out
}

func ewma(values []float64, alpha float64) float64 {
	s := values[0]
	for _, v := range values[1:] {
		s = alpha*v + (1-alpha)*s
	}
	return s
}

// coefficientOfVariation is the population standard deviation around mean
// (the EWMA) over |mean|. A zero mean gives 0 for a constant signal and
// 1e9 otherwise, so the conflict rule fires.
func coefficientOfVariation(values []float64, mean float64) float64 {
	var sum float64
	for _, v := range values {
		d := v - mean
		sum += d * d
	}
	stdev := math.Sqrt(sum / float64(len(values)))
	if mean == 0 {
		if stdev == 0 {
			return 0
		}
		return 1e9
	}
	return stdev / math.Abs(mean)
}

func mergeHash(n int, last Point, distinct int, t Thresholds) State {
	rotations := max(0, distinct-1)
	s := State{
		CurrentValue:      last.Value,
		Confidence:        1 / (1 + float64(rotations)),
		ObservationCount:  n,
		LastObservationTS: last.TS,
	}
	switch {
	case rotations == 0:
		s.State = StateStable
	case rotations <= t.HashMaxRotations:
		s.State = StateDrifting
	default:
		s.State = StateConflicted
	}
	return s
}
