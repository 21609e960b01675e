package attribution_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/testrig/conformance"
)

// mergeVector is one line of a merge vector file (testdata/*-merge.jsonl).
type mergeVector struct {
	Kind         attribution.Kind `json:"kind"`
	Observations []struct {
		TS    float64           `json:"ts"`
		Value attribution.Value `json:"value"`
	} `json:"observations"`
	Expected struct {
		State             string            `json:"state"`
		CurrentValue      attribution.Value `json:"current_value"`
		Confidence        float64           `json:"confidence"`
		ObservationCount  int               `json:"observation_count"`
		LastObservationTS float64           `json:"last_observation_ts"`
	} `json:"expected"`
	name string
}

func mustReadLines(tb testing.TB, name string) [][]byte {
	tb.Helper()
	lines, err := conformance.Lines(name)
	if err != nil {
		tb.Fatal(err)
	}
	return lines
}

func closeEnough(a, b float64) bool { return conformance.CloseEnough(a, b) }

// sameValue compares JSON values as the conformance rules do: integers
// exactly, other numbers within the relative tolerance, types kept.
func sameValue(a, b attribution.Value) bool {
	x, errx := conformance.Decode([]byte(a))
	y, erry := conformance.Decode([]byte(b))
	if errx != nil || erry != nil {
		return a == b
	}
	return conformance.SameJSON(x, y)
}

func mergeVectors(tb testing.TB) []mergeVector {
	tb.Helper()
	files, err := conformance.Files("-merge.jsonl")
	if err != nil {
		tb.Fatal(err)
	}
	var out []mergeVector
	for _, name := range files {
		for i, line := range mustReadLines(tb, name) {
			var v mergeVector
			if err := json.Unmarshal(line, &v); err != nil {
				tb.Fatalf("%s vector %d: %v", name, i+1, err)
			}
			v.name = fmt.Sprintf("%s:%d", name, i+1)
			out = append(out, v)
		}
	}
	return out
}

// TestMergeConformance runs every reference merge vector through the
// whole-series merger and through the incremental record, fed in series
// order and in reverse.
func TestMergeConformance(t *testing.T) {
	th := attribution.DefaultThresholds()
	for _, v := range mergeVectors(t) {
		points := make([]attribution.Point, len(v.Observations))
		for j, o := range v.Observations {
			points[j] = attribution.Point{TS: o.TS, Ref: refOf(j), Value: o.Value}
		}
		incremental := attribution.EmptySeries(v.Kind, th)
		for j := len(points) - 1; j >= 0; j-- {
			incremental.Add(points[j])
		}
		for name, got := range map[string]attribution.State{
			"merge":       attribution.Merge(v.Kind, points, th),
			"incremental": incremental.State(th),
		} {
			e := v.Expected
			if got.State != e.State || !sameValue(got.CurrentValue, e.CurrentValue) ||
				!closeEnough(got.Confidence, e.Confidence) || got.ObservationCount != e.ObservationCount ||
				!closeEnough(got.LastObservationTS, e.LastObservationTS) {
				t.Errorf("vector %s (%s, %s): got %+v, want %+v", v.name, v.Kind, name, got, e)
			}
		}
	}
}

// refOf gives vector points evidence refs that sort in series order.
func refOf(j int) string {
	return string(rune('a'+j/676%26)) + string(rune('a'+j/26%26)) + string(rune('a'+j%26))
}
