package replay_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/replay"
)

// streamVector is one line of testdata/public-stream.jsonl.
type streamVector struct {
	Registry       map[string]string `json:"registry"`
	Messages       []json.RawMessage `json:"messages"`
	ExpectedEvents []map[string]any  `json:"expected_events"`
	ExpectedStates []map[string]any  `json:"expected_states"`
}

func mustStreamVectors(tb testing.TB) []streamVector {
	tb.Helper()
	path := filepath.Join("..", "..", "testdata", "public-stream.jsonl")
	f, err := os.Open(path)
	if err != nil {
		tb.Fatalf("conformance vectors missing: %v", err)
	}
	defer f.Close()
	var out []streamVector
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		var v streamVector
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			tb.Fatalf("vector %d: %v", len(out)+1, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil || len(out) == 0 {
		tb.Fatalf("read %s: %v (%d vectors)", path, err, len(out))
	}
	return out
}

func mustRegistry(tb testing.TB, kinds map[string]string) attribution.Registry {
	tb.Helper()
	raw, _ := json.Marshal(kinds)
	reg, err := attribution.BuiltinRegistry().WithOverrides(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return reg
}

// TestStreamConformance replays every reference stream vector and compares
// the emitted transitions, in order, and the final states.
func TestStreamConformance(t *testing.T) {
	for _, full := range []bool{false, true} {
		for i, v := range mustStreamVectors(t) {
			name := fmt.Sprintf("vector%03d/full=%v", i+1, full)
			var in bytes.Buffer
			for _, m := range v.Messages {
				in.Write(m)
				in.WriteByte('\n')
			}
			var out, errOut bytes.Buffer
			res, err := replay.Run(context.Background(), &in, &out, &errOut, replay.Options{
				Registry:      mustRegistry(t, v.Registry),
				Thresholds:    attribution.DefaultThresholds(),
				FullRecompute: full,
			})
			if err != nil || res.BadLines > 0 {
				t.Fatalf("%s: replay: %v; stderr: %s", name, err, errOut.String())
			}
			var events, states []map[string]any
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("%s: output line %q: %v", name, line, err)
				}
				switch m["type"] {
				case attribution.EventStateChanged:
					events = append(events, m)
				case "state":
					states = append(states, m)
				}
			}
			compareRows(t, name+" events", events, v.ExpectedEvents)
			compareRows(t, name+" states", states, v.ExpectedStates)
		}
	}
}

func compareRows(t *testing.T, name string, got, want []map[string]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d rows, want %d", name, len(got), len(want))
	}
	for i := 0; i < min(len(got), len(want)); i++ {
		for field, w := range want[i] {
			if !sameJSON(got[i][field], w) {
				t.Errorf("%s row %d: %s = %v, want %v\n got  %v\n want %v", name, i, field, got[i][field], w, got[i], want[i])
				return
			}
		}
	}
}

// sameJSON compares decoded JSON, numbers within a relative 1e-9.
func sameJSON(a, b any) bool {
	x, xok := a.(float64)
	y, yok := b.(float64)
	if xok && yok {
		return x == y || math.Abs(x-y) <= 1e-9*math.Max(math.Abs(x), math.Abs(y))
	}
	ab, _ := json.Marshal(a)
	bb, _ := json.Marshal(b)
	return bytes.Equal(ab, bb)
}
