package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/replay"
	"decnet-attribution/internal/testrig/conformance"
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

// TestIdentityStream replays observations of three attackers mixed with
// DECNET identity events: a1 and a2 form I1 and I2, I2 merges into I1, a3
// is linked to I2 while it is merged, then the merge is revoked. States
// belong to canonical identities and count the union of their attackers.
func TestIdentityStream(t *testing.T) {
	obs := func(a string, i int, v string) string {
		return fmt.Sprintf(`{"primitive":"motor.input_modality","value":%q,"evidence_ref":"%s#%d","ts":%d,"attacker_uuid":%q}`, v, a, i, 100+i, a)
	}
	bus := func(id, topic string, ts int, payload string) string {
		return fmt.Sprintf(`{"v":1,"id":%q,"topic":%q,"ts":%d,"payload":%s}`, id, topic, ts, payload)
	}
	lines := []string{
		obs("a1", 1, "typed"), obs("a1", 2, "typed"), obs("a2", 3, "typed"),
		bus("e1", "identity.formed", 200, `{"identity_uuid":"I1","observation_uuids":["a1"]}`),
		bus("e2", "identity.formed", 201, `{"identity_uuid":"I2","observation_uuids":["a2"]}`),
		bus("e3", "identity.merged", 202, `{"winner_uuid":"I1","loser_uuid":"I2"}`),
		bus("e4", "identity.observation.linked", 203, `{"identity_uuid":"I2","observation_uuid":"a3"}`),
		obs("a3", 4, "pasted"), obs("a3", 5, "pasted"),
		bus("e3", "identity.merged", 202, `{"winner_uuid":"I1","loser_uuid":"I2"}`), // repeated
		obs("a4", 6, "typed"),
		bus("e5", "identity.unmerged", 204, `{"resurrected_uuid":"I2","former_winner_uuid":"I1"}`),
		bus("e6", "identity.unmerged", 205, `{"resurrected_uuid":"I7","former_winner_uuid":"I1"}`),
		bus("e7", "identity.merged", 206, `{"winner_uuid":"I2","loser_uuid":"I2"}`),
	}
	var out, errOut bytes.Buffer
	res, err := replay.Run(context.Background(), strings.NewReader(strings.Join(lines, "\n")), &out, &errOut, replay.Options{
		Registry: attribution.BuiltinRegistry(), Thresholds: attribution.DefaultThresholds(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.BadLines != 2 || !strings.Contains(errOut.String(), "line 13: payload.resurrected_uuid: identity.unmerged: no merge of I7 into I1 has been seen") ||
		!strings.Contains(errOut.String(), "line 14: payload.loser_uuid: \"I2\" is also the winner") {
		t.Errorf("bad lines %d, stderr:\n%s", res.BadLines, errOut.String())
	}
	var states []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m["type"] == "state" {
			states = append(states, fmt.Sprintf("%v %v %v %v %v", m["identity_uuid"], m["attackers"], m["attacker_uuid"], m["state"], m["observation_count"]))
		}
	}
	want := []string{
		"I1 [a1] <nil> unknown 2",
		"I2 [a2 a3] <nil> conflicted 3",
		attribution.StubIdentityID("a4") + " [a4] a4 unknown 1",
	}
	if strings.Join(states, "\n") != strings.Join(want, "\n") {
		t.Errorf("states:\n%s\nwant:\n%s\noutput:\n%s", strings.Join(states, "\n"), strings.Join(want, "\n"), out.String())
	}
	if res.Rekeyed != 3 { // both stubs, then I2 while merged
		t.Errorf("%d rekeyed events, want 3", res.Rekeyed)
	}
}
