package attribution

import "sort"

// MaxHashValues bounds the distinct hashes a series record tracks inside the
// hash window. Past it the record cannot stay exact and asks for a full
// recompute (Series.Exact).
const MaxHashValues = 64

// Series is the incremental record of one (identity, primitive) series: all
// that the mergers need, in O(window) space, updated in O(1) per
// observation whatever the arrival order.
//
// Categorical and numeric mergers read only the series length and its last
// 2N points, so the record keeps those (Tail). The hash merger reads the
// last point and the distinct non-null values within the hash window of it;
// the record keeps, per distinct value, the newest ts it was seen at
// (Hashes), dropping values whose newest sighting has left the window:
// the window only moves forward, so a dropped value can come back only with
// a new observation, which adds it again.
type Series struct {
	Kind Kind `json:"k"`
	// Keep and HashWindow are the thresholds the record was built with; a
	// record built with others must be rebuilt from the whole series.
	Keep int `json:"keep"`
	// Equality is the value equality the record was built with (see
	// ValueEquality); a record of another must be rebuilt too.
	Equality   int     `json:"eq,omitempty"`
	HashWindow float64 `json:"hw,omitempty"`
	Count      int     `json:"n"`
	Tail       []Point `json:"tail,omitempty"`
	// Hashes holds one sighting per equality class, sorted by class
	// (deterministic encoding).
	Hashes []HashSighting `json:"hashes,omitempty"`
	// Overflow is set when more than MaxHashValues distinct hashes fell
	// inside the window; the record is then not exact.
	Overflow bool `json:"overflow,omitempty"`
}

// ValueEquality numbers the value equality records are built with. Records
// stored before it (0) compared canonical JSON text, so true and 1 were two
// values: they are rebuilt from the whole series when next touched.
const ValueEquality = 1

// HashSighting is the newest ts at which a hash value's equality class was
// observed.
type HashSighting struct {
	Value Value   `json:"v"`
	TS    float64 `json:"t"`
}

// NewSeries builds the record of a whole series, given in any order.
func NewSeries(kind Kind, points []Point, t Thresholds) Series {
	s := EmptySeries(kind, t)
	s.Count = len(points)
	if len(points) == 0 {
		return s
	}
	sorted := append([]Point(nil), points...)
	SortPoints(sorted)
	keep := min(len(sorted), s.Keep)
	s.Tail = append([]Point(nil), sorted[len(sorted)-keep:]...)
	if kind != Hash {
		return s
	}
	start := s.Tail[len(s.Tail)-1].TS - t.HashWindowSeconds
	newest := make(map[Value]float64)
	for _, p := range sorted {
		if p.TS >= start && !p.Value.IsNull() {
			newest[p.Value.Class()] = p.TS // sorted: the last sighting is the newest
		}
	}
	for v, ts := range newest {
		s.Hashes = append(s.Hashes, HashSighting{Value: v, TS: ts})
	}
	sort.Slice(s.Hashes, func(i, j int) bool { return s.Hashes[i].Value < s.Hashes[j].Value })
	if len(s.Hashes) > MaxHashValues {
		s.Overflow = true
		s.Hashes = s.Hashes[:MaxHashValues]
	}
	return s
}

// EmptySeries is the record of a series with no observations yet.
func EmptySeries(kind Kind, t Thresholds) Series {
	s := Series{Kind: kind, Keep: 2 * t.Window, Equality: ValueEquality}
	if kind == Hash {
		s.Keep, s.HashWindow = 1, t.HashWindowSeconds
	}
	return s
}

// Compatible reports whether the record was built for this kind, these
// thresholds and this value equality, so that Add and State are exact.
func (s *Series) Compatible(kind Kind, t Thresholds) bool {
	e := EmptySeries(kind, t)
	return s.Kind == e.Kind && s.Keep == e.Keep && s.HashWindow == e.HashWindow && s.Equality == e.Equality && !s.Overflow
}

// Exact reports whether State equals Merge over the whole series.
func (s *Series) Exact() bool { return !s.Overflow }

// Add applies one new observation. The caller guarantees it is new to the
// series (redeliveries are detected by the observation store).
func (s *Series) Add(p Point) {
	s.Count++
	keep := s.Keep
	i := sort.Search(len(s.Tail), func(i int) bool { return p.Before(s.Tail[i]) })
	switch {
	case len(s.Tail) < keep:
		s.Tail = append(s.Tail, Point{})
		copy(s.Tail[i+1:], s.Tail[i:])
		s.Tail[i] = p
	case i > 0:
		// Full: the point displaces the oldest kept one.
		copy(s.Tail[:i-1], s.Tail[1:i])
		s.Tail[i-1] = p
	default:
		// Older than everything kept: it only counts.
	}
	if s.Kind == Hash {
		s.addHash(p)
	}
}

func (s *Series) addHash(p Point) {
	newest := s.Tail[len(s.Tail)-1].TS
	start := newest - s.HashWindow
	if !p.Value.IsNull() && p.TS >= start {
		class := p.Value.Class()
		i := sort.Search(len(s.Hashes), func(i int) bool { return s.Hashes[i].Value >= class })
		if i < len(s.Hashes) && s.Hashes[i].Value == class {
			s.Hashes[i].TS = max(s.Hashes[i].TS, p.TS)
		} else {
			s.Hashes = append(s.Hashes, HashSighting{})
			copy(s.Hashes[i+1:], s.Hashes[i:])
			s.Hashes[i] = HashSighting{Value: class, TS: p.TS}
		}
	}
	kept := s.Hashes[:0]
	for _, h := range s.Hashes {
		if h.TS >= start {
			kept = append(kept, h)
		}
	}
	s.Hashes = kept
	if len(s.Hashes) > MaxHashValues {
		s.Overflow = true
		s.Hashes = s.Hashes[:MaxHashValues]
	}
}

// State is the merger's verdict on the series.
func (s *Series) State(t Thresholds) State {
	if s.Count == 0 || len(s.Tail) == 0 {
		return State{State: StateUnknown, CurrentValue: Null}
	}
	if s.Kind == Hash {
		return mergeHash(s.Count, s.Tail[len(s.Tail)-1], len(s.Hashes), t)
	}
	return mergeTail(s.Kind, s.Count, s.Tail, t)
}

// Clone returns a deep copy.
func (s Series) Clone() Series {
	s.Tail = append([]Point(nil), s.Tail...)
	s.Hashes = append([]HashSighting(nil), s.Hashes...)
	return s
}
