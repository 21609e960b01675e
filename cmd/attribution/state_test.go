package main

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/operator"
)

// cliStream is a small stream for two attackers: two primitives that
// alternate (multi_actor), one steady, a numeric and a hash one.
func cliStream() []string {
	var lines []string
	for i := range 6 {
		for a := range 2 {
			for p, v := range map[string]any{
				"motor.input_modality":            []string{"typed", "pasted"}[i%2],
				"environmental.locale":            []string{"en_US", "de_DE"}[i%2],
				"temporal.active_hours":           []string{"night", "night", "day"}[(i+a)%3],
				"toolchain.c2.beacon_interval_ms": 30000 + 1000*((i*7+a)%4),
				"toolchain.ssh.hassh_client":      fmt.Sprintf("h%d", (i/3+a)%2),
			} {
				val := fmt.Sprint(v)
				if s, ok := v.(string); ok {
					val = fmt.Sprintf("%q", s)
				}
				lines = append(lines, fmt.Sprintf(`{"attacker_uuid":"att-%d","primitive":%q,"evidence_ref":"s%02d","ts":%d,"value":%s,"v":1}`,
					a, p, i, 1_700_000_000+3600*i+a, val))
			}
		}
	}
	return lines
}

// replayStateLines runs the replay command and returns its state lines by
// attacker|primitive.
func replayStateLines(tb testing.TB, stream []string) map[string]map[string]any {
	tb.Helper()
	res := runCLI(tb, strings.Join(stream, "\n"), "replay")
	if res.code != 0 {
		tb.Fatalf("replay: %+v", res)
	}
	out := map[string]map[string]any{}
	for _, l := range jsonLines(tb, res.stdout) {
		if l["type"] == "state" {
			out[l["attacker_uuid"].(string)+"|"+l["primitive"].(string)] = l
		}
	}
	return out
}

func TestStateCommand(t *testing.T) {
	srv, stack := mustStack(t)
	stream := cliStream()
	t.Setenv("OBSERVATION_QUEUE_URL", stack.QueueURL("ObservationQueue"))
	if res := runCLI(t, strings.Join(stream, "\n"), "send"); res.code != 0 {
		t.Fatalf("send: %+v", res)
	}
	if n := mustDeliver(t, srv, stack); n != len(stream) {
		t.Fatalf("delivered %d of %d messages", n, len(stream))
	}
	want := replayStateLines(t, stream)

	t.Setenv("STATES_TABLE", stack.TableName("StatesTable"))
	res := runCLI(t, "", "state", "--attacker", "att-1", "--identities-table", stack.TableName("IdentitiesTable"), "--json")
	if res.code != 0 {
		t.Fatalf("state --json: %+v", res)
	}
	lines := jsonLines(t, res.stdout)
	if len(lines) != 6 {
		t.Fatalf("%d lines, want 5 states and the identity:\n%s", len(lines), res.stdout)
	}
	identity := attribution.StubIdentityID("att-1")
	for _, l := range lines[:5] {
		w := want["att-1|"+l["primitive"].(string)]
		if l["type"] != "state" || l["identity_uuid"] != identity || w == nil {
			t.Fatalf("line %v", l)
		}
		for _, f := range []string{"state", "observation_count", "last_observation_ts", "last_change_ts"} {
			if fmt.Sprint(l[f]) != fmt.Sprint(w[f]) {
				t.Errorf("%s %s: state says %v, replay %v", l["primitive"], f, l[f], w[f])
			}
		}
		if fmt.Sprint(l["current_value"]) != fmt.Sprint(w["current_value"]) || math.Abs(l["confidence"].(float64)-w["confidence"].(float64)) > 1e-9 {
			t.Errorf("%s: value %v confidence %v, replay %v %v", l["primitive"], l["current_value"], l["confidence"], w["current_value"], w["confidence"])
		}
	}
	var flagged []string
	for _, p := range []string{"environmental.locale", "motor.input_modality", "temporal.active_hours", "toolchain.c2.beacon_interval_ms", "toolchain.ssh.hassh_client"} {
		if want["att-1|"+p]["state"] == attribution.StateMultiActor {
			flagged = append(flagged, p)
		}
	}
	footer := lines[5]
	if len(flagged) < 2 || footer["type"] != "identity" || fmt.Sprint(footer["multi_actor_primitives"]) != fmt.Sprint(flagged) || footer["suspicions"].(float64) < 1 {
		t.Fatalf("identity line %v; replay flags %v", footer, flagged)
	}

	// The table, by identity.
	res = runCLI(t, "", "state", "--identity", identity)
	if res.code != 0 {
		t.Fatalf("state: %+v", res)
	}
	for _, wantText := range []string{
		"identity " + identity + " (attacker att-1)\n",
		"PRIMITIVE", "STABLE SINCE", "LAST OBSERVATION",
		"environmental.locale", "multi_actor", `"de_DE"`,
		"2023-11-15T",
		"multi_actor flagged: " + strings.Join(flagged, ", ") + " (multi_actor_suspected events so far: ",
	} {
		if !strings.Contains(res.stdout, wantText) {
			t.Errorf("table lacks %q:\n%s", wantText, res.stdout)
		}
	}

	// Not found, and usage mistakes.
	for name, c := range map[string]struct {
		args []string
		code int
		want string
	}{
		"unknown attacker": {[]string{"state", "--attacker", "att-x", "--identities-table", stack.TableName("IdentitiesTable")}, 1, "attacker att-x is not in table"},
		"unknown identity": {[]string{"state", "--identity", "nope"}, 1, "identity nope has no states"},
		"missing table":    {[]string{"state", "--identity", "x", "--states-table", "gone"}, 1, "table gone does not exist"},
		"no identities":    {[]string{"state", "--attacker", "att-1"}, 1, "identities table: not set; pass --identities-table, set IDENTITIES_TABLE or --stack"},
		"both":             {[]string{"state", "--attacker", "a", "--identity", "b"}, 2, "exactly one"},
		"neither":          {[]string{"state"}, 2, "exactly one"},
	} {
		if res := runCLI(t, "", c.args...); res.code != c.code || !strings.Contains(res.stderr, c.want) {
			t.Errorf("%s: %+v, want exit %d and %q", name, res, c.code, c.want)
		}
	}
}

func TestStateTable(t *testing.T) {
	now := time.Date(2024, 4, 25, 17, 9, 35, 0, time.UTC)
	s := &operator.IdentityStates{
		IdentityUUID: "id-1", AttackerUUID: "att-1",
		States: []operator.SeriesState{
			{Primitive: "motor.input_modality", AttackerUUID: "att-1",
				State:        attribution.State{State: "stable", CurrentValue: `"typed"`, Confidence: 0.8, ObservationCount: 12, LastObservationTS: float64(now.Add(-90 * time.Second).Unix())},
				LastChangeTS: float64(now.Add(-3 * time.Hour).Unix())},
			{Primitive: "toolchain.ssh.hassh_client", AttackerUUID: "att-1", Pending: 2,
				State:        attribution.State{State: "drifting", CurrentValue: attribution.Value(`"` + strings.Repeat("f", 40) + `"`), Confidence: 0.5, ObservationCount: 3, LastObservationTS: float64(now.Unix())},
				LastChangeTS: float64(now.Add(-50 * time.Hour).Unix())},
		},
	}
	var b strings.Builder
	if err := writeStatesTable(&b, s, now); err != nil {
		t.Fatal(err)
	}
	want := `identity id-1 (attacker att-1)

PRIMITIVE                   STATE     VALUE                             CONFIDENCE  COUNT  STABLE SINCE                   LAST OBSERVATION
motor.input_modality        stable    "typed"                           0.80        12     2024-04-25T14:09:35Z (3h ago)  2024-04-25T17:08:05Z (1m ago)
toolchain.ssh.hassh_client  drifting  "ffffffffffffffffffffffffffffff…  0.50        3      2024-04-23T15:09:35Z (2d ago)  2024-04-25T17:09:35Z (just now)

2 rebuild events not yet published (they go out with the series' next observation)
`
	if b.String() != want {
		t.Fatalf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestRelativeTime(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                    "just now",
		45 * time.Second:     "45s ago",
		12 * time.Minute:     "12m ago",
		3 * time.Hour:        "3h ago",
		47 * time.Hour:       "47h ago",
		72 * time.Hour:       "3d ago",
		800 * 24 * time.Hour: "2y ago",
		-5 * time.Minute:     "in 5m",
	} {
		if got := relative(d); got != want {
			t.Errorf("%s: %q, want %q", d, got, want)
		}
	}
	if got := humanTime(0, time.Now()); got != "-" {
		t.Errorf("zero time: %q", got)
	}
	if got := humanTime(1714054175.367, time.Unix(1714054175, 0).Add(time.Hour)); got != "2024-04-25T14:09:35Z (59m ago)" {
		t.Errorf("fractional time: %q", got)
	}
}

// TestStateCommandShowsMergeChain: after DECNET merged the identity of
// att-1 into that of att-0, state --attacker att-1 shows att-1's literal
// identity, the chain to the canonical one, its two attackers and the
// states of the union, as the replay computes them.
func TestStateCommandShowsMergeChain(t *testing.T) {
	srv, stack := mustStack(t)
	stream := cliStream()
	stream = append(stream,
		`{"v":1,"id":"e1","topic":"identity.formed","type":"formed","ts":1700100000,"payload":{"identity_uuid":"id-b","observation_uuids":["att-1"]}}`,
		`{"v":1,"id":"e2","topic":"identity.formed","type":"formed","ts":1700100001,"payload":{"identity_uuid":"id-a","observation_uuids":["att-0"]}}`,
		`{"v":1,"id":"e3","topic":"identity.merged","type":"merged","ts":1700100002,"payload":{"winner_uuid":"id-a","loser_uuid":"id-b"}}`,
	)
	t.Setenv("OBSERVATION_QUEUE_URL", stack.QueueURL("ObservationQueue"))
	for _, part := range [][]string{stream[:len(stream)-3], stream[len(stream)-3:]} {
		// Identity events after the observations: each one's change is
		// then the only thing in flight.
		if res := runCLI(t, strings.Join(part, "\n"), "send"); res.code != 0 {
			t.Fatalf("send: %+v", res)
		}
		if n := mustDeliver(t, srv, stack); n != len(part) {
			t.Fatalf("delivered %d of %d messages", n, len(part))
		}
	}
	res := runCLI(t, strings.Join(stream, "\n"), "replay")
	if res.code != 0 {
		t.Fatalf("replay: %+v", res)
	}
	want := map[string]map[string]any{}
	for _, l := range jsonLines(t, res.stdout) {
		if l["type"] == "state" && l["identity_uuid"] == "id-a" {
			want[l["primitive"].(string)] = l
		}
	}
	if len(want) != 5 {
		t.Fatalf("replay: %d states of id-a, want 5:\n%s", len(want), res.stdout)
	}

	t.Setenv("STATES_TABLE", stack.TableName("StatesTable"))
	t.Setenv("IDENTITIES_TABLE", stack.TableName("IdentitiesTable"))
	res = runCLI(t, "", "state", "--attacker", "att-1", "--json")
	if res.code != 0 {
		t.Fatalf("state --json: %+v", res)
	}
	lines := jsonLines(t, res.stdout)
	if len(lines) != 6 {
		t.Fatalf("%d lines, want 5 states and the identity:\n%s", len(lines), res.stdout)
	}
	for _, l := range lines[:5] {
		w := want[l["primitive"].(string)]
		if l["identity_uuid"] != "id-a" || w == nil {
			t.Fatalf("line %v", l)
		}
		for _, f := range []string{"state", "observation_count", "last_observation_ts", "current_value"} {
			if fmt.Sprint(l[f]) != fmt.Sprint(w[f]) {
				t.Errorf("%s %s: state says %v, replay %v", l["primitive"], f, l[f], w[f])
			}
		}
	}
	ident := lines[5]
	if got := mustJSON(t, ident["chain"]); got != `[{"identity_uuid":"id-b","merged_event_id":"e3","merged_ts":1700100002},{"identity_uuid":"id-a"}]` {
		t.Errorf("chain %s", got)
	}
	if got := fmt.Sprint(ident["attackers"]); got != "[att-0 att-1]" || ident["identity_uuid"] != "id-a" || ident["attacker_uuid"] != "att-1" {
		t.Errorf("identity line %v", ident)
	}

	// The table, by the retired identity: the same chain and attackers.
	res = runCLI(t, "", "state", "--identity", "id-b")
	if res.code != 0 {
		t.Fatalf("state: %+v", res)
	}
	for _, wantText := range []string{
		"identity id-a", "merge chain: id-b → id-a\n", "  id-b merged 2023-11-16T", "(event e3)\n",
		"attackers (2): att-0, att-1\n", "PRIMITIVE", "motor.input_modality",
	} {
		if !strings.Contains(res.stdout, wantText) {
			t.Errorf("table lacks %q:\n%s", wantText, res.stdout)
		}
	}
}

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
