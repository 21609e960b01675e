package attribution_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"decnet-attribution/internal/attribution"
)

var stateSink attribution.State

// benchSeries returns n points in series order: values from a few
// categories, a noisy level, or a handful of hashes; about ten minutes
// apart, so the hash window holds some 150 of them.
func benchSeries(kind attribution.Kind, n int) []attribution.Point {
	rng := rand.New(rand.NewPCG(uint64(n), uint64(len(kind))))
	refs := rng.Perm(n)
	pts := make([]attribution.Point, n)
	ts := 1.7e9
	for i := range pts {
		ts += float64(rng.IntN(1200))
		var v string
		switch kind {
		case attribution.Numeric:
			v = jsonNumber(30000 + float64(rng.IntN(2000)))
		case attribution.Hash:
			v = fmt.Sprintf(`"%016x"`, rng.IntN(8))
		default:
			v = []string{`"typed"`, `"pasted"`, `"mixed"`}[rng.IntN(3)]
		}
		pts[i] = attribution.Point{TS: ts, Ref: fmt.Sprintf("shard:att-1#s%07d", refs[i]), Value: attribution.Value(v)}
	}
	return pts
}

// BenchmarkUpdate compares the cost of one new observation on a series
// that already holds n:
//
//   - incremental: Series.Add and State on the stored record (restoring
//     the record's O(window) slices to the n-point state each time is
//     included);
//   - full: what the reference worker does on every event — take the n
//     stored points (as a Query returns them, by evidence_ref, not by ts)
//     plus the new one, sort them and Merge.
func BenchmarkUpdate(b *testing.B) {
	th := attribution.DefaultThresholds()
	for _, n := range []int{10, 1000, 100000} {
		for _, kind := range []attribution.Kind{attribution.Categorical, attribution.Numeric, attribution.Hash} {
			pts := benchSeries(kind, n+1)
			stored, next := pts[:n], pts[n]
			b.Run(fmt.Sprintf("incremental/n=%d/%s", n, kind), func(b *testing.B) {
				base := attribution.NewSeries(kind, stored, th)
				work := base.Clone()
				b.ReportAllocs()
				for b.Loop() {
					work.Count = base.Count
					work.Tail = append(work.Tail[:0], base.Tail...)
					work.Hashes = append(work.Hashes[:0], base.Hashes...)
					work.Add(next)
					stateSink = work.State(th)
				}
			})
			b.Run(fmt.Sprintf("full/n=%d/%s", n, kind), func(b *testing.B) {
				loaded := slices.Clone(stored)
				slices.SortFunc(loaded, func(p, q attribution.Point) int { return strings.Compare(p.Ref, q.Ref) })
				buf := make([]attribution.Point, 0, n+1)
				b.ReportAllocs()
				for b.Loop() {
					buf = append(append(buf[:0], loaded...), next)
					attribution.SortPoints(buf)
					stateSink = attribution.Merge(kind, buf, th)
				}
			})
		}
	}
}

// TestBenchmarkSeriesAgree checks that both benchmarked paths compute the
// same state, so the comparison is between equals.
func TestBenchmarkSeriesAgree(t *testing.T) {
	th := attribution.DefaultThresholds()
	for _, kind := range []attribution.Kind{attribution.Categorical, attribution.Numeric, attribution.Hash} {
		pts := benchSeries(kind, 1001)
		s := attribution.NewSeries(kind, pts[:1000], th)
		s.Add(pts[1000])
		if got, want := s.State(th), attribution.Merge(kind, pts, th); got != want {
			t.Errorf("%s: incremental %+v, full %+v", kind, got, want)
		}
	}
}
