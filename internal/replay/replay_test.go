package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/conformance"
	"decnet-attribution/internal/replay"
)

// TestStreamConformance replays every reference stream vector and compares
// the emitted transitions, in order, and the final states.
func TestStreamConformance(t *testing.T) {
	vectors, err := conformance.Streams()
	if err != nil {
		t.Fatal(err)
	}
	for _, full := range []bool{false, true} {
		for i, v := range vectors {
			name := fmt.Sprintf("vector%03d/full=%v", i+1, full)
			reg, err := attribution.BuiltinRegistry().WithOverrides(v.RegistryJSON())
			if err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			res, err := replay.Run(context.Background(), strings.NewReader(conformance.JoinLines(v.Messages)), &out, &errOut, replay.Options{
				Registry:      reg,
				Thresholds:    attribution.DefaultThresholds(),
				FullRecompute: full,
			})
			if err != nil || res.BadLines > 0 {
				t.Fatalf("%s: replay: %v; stderr: %s", name, err, errOut.String())
			}
			var events, states []map[string]any
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				rows, err := conformance.Rows([]json.RawMessage{json.RawMessage(line)})
				if err != nil {
					t.Fatalf("%s: output line %q: %v", name, line, err)
				}
				m := rows[0]
				switch m["type"] {
				case attribution.EventStateChanged:
					events = append(events, m)
				case "state":
					states = append(states, m)
				}
			}
			if d := conformance.Diff(events, v.ExpectedEvents); d != "" {
				t.Errorf("%s events: %s", name, d)
			}
			if d := conformance.Diff(states, v.ExpectedStates); d != "" {
				t.Errorf("%s states: %s", name, d)
			}
		}
	}
}
