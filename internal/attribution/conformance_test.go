package attribution_test

import (
	"encoding/json"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/conformance"
)

// mergeVector is one line of testdata/public-merge.jsonl.
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

// sameValue compares JSON values, numbers within the relative tolerance.
func sameValue(a, b attribution.Value) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return a == b
	}
	return conformance.SameJSON(x, y)
}

// TestMergeConformance runs every reference merge vector through the
// whole-series merger and through the incremental record, fed in series
// order and in reverse.
func TestMergeConformance(t *testing.T) {
	th := attribution.DefaultThresholds()
	for i, line := range mustReadLines(t, "public-merge.jsonl") {
		var v mergeVector
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatalf("vector %d: %v", i+1, err)
		}
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
				t.Errorf("vector %d (%s, %s): got %+v, want %+v", i+1, v.Kind, name, got, e)
			}
		}
	}
}

// refOf gives vector points evidence refs that sort in series order.
func refOf(j int) string {
	return string(rune('a'+j/676%26)) + string(rune('a'+j/26%26)) + string(rune('a'+j%26))
}
