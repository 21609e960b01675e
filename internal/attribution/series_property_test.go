package attribution_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"decnet-attribution/internal/attribution"
)

// genPointsOf draws one random series of a kind, in series order, with
// values from the equality pools if equality is set. A dense hash series
// packs its points into the hash window, so up to 80 distinct hashes are in
// it at once.
func genPointsOf(rng *rand.Rand, kind attribution.Kind, n int, dense, equality bool) []attribution.Point {
	var vals []string
	switch {
	case equality:
		vals = streamOpts{Equality: true}.values(rng, kind, n)
	case kind == attribution.Numeric:
		vals = numericValues(rng, n)
	case kind == attribution.Hash && dense:
		vals = hashValuesOf(rng, n, 40+rng.IntN(41))
	case kind == attribution.Hash:
		vals = hashValues(rng, n, 80)
	default:
		vals = categoricalValues(rng, n)
	}
	timeKind := kind
	if dense {
		timeKind = attribution.Categorical
	}
	times := seriesTimes(rng, timeKind, n, 1.7e9)
	refs := rng.Perm(n)
	pts := make([]attribution.Point, n)
	for i := range pts {
		pts[i] = attribution.Point{TS: times[i], Ref: fmt.Sprintf("ref-%03d", refs[i]), Value: mustCanonical(nil, vals[i])}
	}
	attribution.SortPoints(pts)
	return pts
}

func mustCanonical(tb testing.TB, raw string) attribution.Value {
	if tb != nil {
		tb.Helper()
	}
	v, err := attribution.CanonicalValue([]byte(raw))
	if err != nil {
		if tb == nil {
			panic(err) // generator values are valid JSON
		}
		tb.Fatalf("canonical %s: %v", raw, err)
	}
	return v
}

func mustRoundTrip(tb testing.TB, s attribution.Series) attribution.Series {
	tb.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		tb.Fatalf("encode series: %v", err)
	}
	var out attribution.Series
	if err := json.Unmarshal(b, &out); err != nil {
		tb.Fatalf("decode series %s: %v", b, err)
	}
	return out
}

// distinctNonNull counts the distinct non-null values of a series, by
// equality class.
func distinctNonNull(pts []attribution.Point) int {
	seen := make(map[attribution.Value]bool)
	for _, p := range pts {
		if !p.Value.IsNull() {
			seen[p.Value.Class()] = true
		}
	}
	return len(seen)
}

// sameSeries compares two records field by field, nil and empty slices
// alike (an empty slice does not survive JSON).
func sameSeries(a, b attribution.Series) bool {
	if len(a.Tail) == 0 && len(b.Tail) == 0 {
		a.Tail, b.Tail = nil, nil
	}
	if len(a.Hashes) == 0 && len(b.Hashes) == 0 {
		a.Hashes, b.Hashes = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

// TestSeriesMatchesMerge feeds random series of every kind, in random
// permutations, to Series.Add and checks after every step that State equals
// Merge over the sorted points so far, field by field; that the record
// survives a JSON round trip at any point; and that NewSeries over the same
// points builds the same record.
func TestSeriesMatchesMerge(t *testing.T) {
	custom := func(window int) attribution.Thresholds {
		th := attribution.DefaultThresholds()
		th.Window, th.CategoricalMajority, th.MinObservations = window, window, 1
		th.HashWindowSeconds = 3600 * float64(window)
		return th
	}
	cases := []struct {
		name     string
		th       attribution.Thresholds
		series   int
		equality bool
	}{
		{"defaults", attribution.DefaultThresholds(), 80, false},
		{"window=1", custom(1), 25, false},
		{"window=3", custom(3), 25, false},
		{"window=7", custom(7), 25, false},
		{"equality", attribution.DefaultThresholds(), 80, true},
		{"equality/window=3", custom(3), 40, true},
	}
	kinds := []attribution.Kind{attribution.Categorical, attribution.Numeric, attribution.Hash}
	for ci, tc := range cases {
		if err := tc.th.Validate(); err != nil {
			t.Fatalf("%s: thresholds: %v", tc.name, err)
		}
		for _, kind := range kinds {
			t.Run(tc.name+"/"+string(kind), func(t *testing.T) {
				t.Parallel()
				rng := rand.New(rand.NewPCG(uint64(ci+1), uint64(len(kind))))
				exact, inexact := 0, 0
				for s := 0; s < tc.series; s++ {
					n, dense := rng.IntN(41), false
					if kind == attribution.Hash && s%6 == 0 && !tc.equality {
						n, dense = 90+rng.IntN(60), true // enough distinct hashes to overflow the record
					}
					pts := genPointsOf(rng, kind, n, dense, tc.equality)
					if checkIncremental(t, fmt.Sprintf("series %d", s), kind, pts, rng, tc.th) {
						exact++
					} else {
						inexact++
					}
				}
				if exact == 0 {
					t.Fatalf("no exact series checked")
				}
				t.Logf("%d exact series, %d past MaxHashValues", exact, inexact)
			})
		}
	}
}

// checkIncremental runs one series through Add in a random permutation and
// reports whether the record stayed exact.
func checkIncremental(tb testing.TB, name string, kind attribution.Kind, sorted []attribution.Point, rng *rand.Rand, th attribution.Thresholds) bool {
	tb.Helper()
	order := rng.Perm(len(sorted))
	s := attribution.EmptySeries(kind, th)
	if got, want := s.State(th), attribution.Merge(kind, nil, th); got != want {
		tb.Fatalf("%s: empty: State %+v, Merge %+v", name, got, want)
	}
	var added []attribution.Point
	for step, i := range order {
		s.Add(sorted[i])
		added = append(added, sorted[i])
		if rng.IntN(20) == 0 {
			s = mustRoundTrip(tb, s) // and go on adding to the decoded record
		}
		if len(sorted) > 10 && step != len(order)-1 && rng.IntN(len(sorted)/4) != 0 {
			continue // long series: check a sample of the steps
		}
		prefix := slices.Clone(added)
		attribution.SortPoints(prefix)
		if kind == attribution.Hash && distinctNonNull(prefix) <= attribution.MaxHashValues && !s.Exact() {
			tb.Fatalf("%s step %d: %d distinct hashes, yet the record is not exact", name, step, distinctNonNull(prefix))
		}
		if !s.Exact() {
			continue
		}
		want := attribution.Merge(kind, prefix, th)
		if got := s.State(th); got != want {
			tb.Fatalf("%s step %d (%s, %d points, order %v):\n State %+v\n Merge %+v\n points %v", name, step, kind, len(prefix), order[:step+1], got, want, prefix)
		}
		if step == len(order)-1 || rng.IntN(10) == 0 {
			if got := mustRoundTrip(tb, s); got.State(th) != want || !sameSeries(got, s) {
				tb.Fatalf("%s step %d: after a JSON round trip State %+v, Merge %+v;\n record %+v\n was    %+v", name, step, got.State(th), want, got, s)
			}
		}
		if !s.Compatible(kind, th) {
			tb.Fatalf("%s step %d: exact record not compatible with its own thresholds", name, step)
		}
	}
	whole := attribution.NewSeries(kind, shuffled(rng, sorted), th)
	if whole.Exact() != s.Exact() && distinctNonNull(sorted) <= attribution.MaxHashValues {
		tb.Fatalf("%s: NewSeries exact=%v, incremental exact=%v", name, whole.Exact(), s.Exact())
	}
	if !s.Exact() || !whole.Exact() {
		return false
	}
	if !sameSeries(whole, s) {
		tb.Fatalf("%s: NewSeries and the incremental record differ:\n new %+v\n inc %+v", name, whole, s)
	}
	if got, want := whole.State(th), attribution.Merge(kind, sorted, th); got != want {
		tb.Fatalf("%s: NewSeries State %+v, Merge %+v", name, got, want)
	}
	return true
}

func shuffled(rng *rand.Rand, pts []attribution.Point) []attribution.Point {
	out := slices.Clone(pts)
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// TestSeriesCompatible checks that a record built with other thresholds
// is not reused: its window or hash window would make it inexact.
func TestSeriesCompatible(t *testing.T) {
	def := attribution.DefaultThresholds()
	wider := def
	wider.Window = 7
	shorterHash := def
	shorterHash.HashWindowSeconds = 60
	cases := []struct {
		name  string
		built attribution.Kind
		kind  attribution.Kind
		with  attribution.Thresholds
		want  bool
	}{
		{"categorical same thresholds", attribution.Categorical, attribution.Categorical, def, true},
		{"categorical other window", attribution.Categorical, attribution.Categorical, wider, false},
		{"categorical read as numeric", attribution.Categorical, attribution.Numeric, def, false},
		{"numeric other window", attribution.Numeric, attribution.Numeric, wider, false},
		{"hash other window", attribution.Hash, attribution.Hash, wider, true},
		{"hash other hash window", attribution.Hash, attribution.Hash, shorterHash, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := attribution.EmptySeries(tc.built, def)
			if got := s.Compatible(tc.kind, tc.with); got != tc.want {
				t.Errorf("Compatible = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSeriesHashOverflow checks that a record that cannot track every
// distinct hash says so, and that Clone is deep.
func TestSeriesHashOverflow(t *testing.T) {
	th := attribution.DefaultThresholds()
	s := attribution.EmptySeries(attribution.Hash, th)
	for i := range attribution.MaxHashValues + 1 {
		s.Add(attribution.Point{TS: float64(i), Ref: fmt.Sprint(i), Value: attribution.Value(fmt.Sprintf(`"h%03d"`, i))})
		if i < attribution.MaxHashValues && !s.Exact() {
			t.Fatalf("inexact after %d distinct hashes", i+1)
		}
	}
	if s.Exact() || s.Compatible(attribution.Hash, th) {
		t.Fatalf("record with %d distinct hashes claims to be exact", attribution.MaxHashValues+1)
	}
	c := s.Clone()
	c.Tail[0].Value = `"changed"`
	c.Hashes[0].Value = `"changed"`
	if s.Tail[0].Value == `"changed"` || s.Hashes[0].Value == `"changed"` {
		t.Fatalf("Clone shares slices with the original")
	}
}
