package attribution_test

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"decnet-attribution/internal/attribution"
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
	path := filepath.Join("..", "..", "testdata", name)
	f, err := os.Open(path)
	if err != nil {
		tb.Fatalf("conformance vectors missing: %v", err)
	}
	defer f.Close()
	var lines [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("read %s: %v", path, err)
	}
	if len(lines) == 0 {
		tb.Fatalf("%s holds no vectors", path)
	}
	return lines
}

func closeEnough(a, b float64) bool {
	if a == b {
		return true
	}
	return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

// sameValue compares JSON values, numbers within the relative tolerance.
func sameValue(a, b attribution.Value) bool {
	if a == b {
		return true
	}
	var x, y float64
	if json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil {
		return closeEnough(x, y)
	}
	return false
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
