package schema_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
	"decnet-attribution/internal/schema"
)

func mustValidator(tb testing.TB) *schema.Validator {
	tb.Helper()
	v, err := schema.New()
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// sqsFixture is the part of an events/*.json file the tests read.
type sqsFixture struct {
	Records []struct {
		MessageID string `json:"messageId"`
		Body      string `json:"body"`
	} `json:"Records"`
}

func mustFixtures(tb testing.TB) map[string]sqsFixture {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "..", "events", "*.json"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no event fixtures found (%v)", err)
	}
	out := make(map[string]sqsFixture, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		var f sqsFixture
		if err := json.Unmarshal(data, &f); err != nil || len(f.Records) == 0 {
			tb.Fatalf("%s: not an SQS event with records (%v)", p, err)
		}
		out[filepath.Base(p)] = f
	}
	return out
}

// unwrap returns the envelope inside an EventBridge event or an SNS
// notification, or the body itself.
func unwrap(tb testing.TB, body []byte) []byte {
	tb.Helper()
	var outer map[string]json.RawMessage
	if json.Unmarshal(body, &outer) != nil {
		return body
	}
	if _, ok := outer["primitive"]; ok {
		return body
	}
	if d, ok := outer["detail"]; ok {
		return d
	}
	if m, ok := outer["Message"]; ok {
		var s string
		if err := json.Unmarshal(m, &s); err != nil {
			tb.Fatalf("SNS Message is not a string: %s", m)
		}
		return []byte(s)
	}
	return body
}

// TestValidFixturesMatchTheMessageSchema checks every record of every
// fixture meant to be valid, wrapped and unwrapped.
func TestValidFixturesMatchTheMessageSchema(t *testing.T) {
	v := mustValidator(t)
	checked := 0
	for name, f := range mustFixtures(t) {
		if strings.Contains(name, "malformed") || strings.Contains(name, "invalid") {
			continue
		}
		for _, r := range f.Records {
			body := []byte(r.Body)
			if _, err := attribution.DecodeMessage(body); err != nil {
				t.Fatalf("%s %s: the engine rejects a fixture meant to be valid: %v", name, r.MessageID, err)
			}
			if err := v.Message(body); err != nil {
				t.Errorf("%s %s: %v", name, r.MessageID, err)
			}
			if inner := unwrap(t, body); string(inner) != string(body) {
				if err := v.Message(inner); err != nil {
					t.Errorf("%s %s (unwrapped): %v", name, r.MessageID, err)
				}
			}
			checked++
		}
	}
	if checked < 10 {
		t.Fatalf("only %d valid fixture records checked", checked)
	}
}

// TestSchemaAgreesWithDecodeOnFixtures holds the schema to the engine on
// every fixture record, valid or not: the schema rejects exactly what
// DecodeMessage rejects. The one rule it cannot express is the registry's:
// a numeric primitive's value must be a number, a bool or null.
func TestSchemaAgreesWithDecodeOnFixtures(t *testing.T) {
	v := mustValidator(t)
	reg := attribution.BuiltinRegistry()
	rejected := 0
	for name, f := range mustFixtures(t) {
		for _, r := range f.Records {
			body := []byte(r.Body)
			obs, decodeErr := attribution.DecodeMessage(body)
			schemaErr := v.Message(body)
			if (decodeErr == nil) != (schemaErr == nil) {
				t.Errorf("%s %s: DecodeMessage error %v, schema error %v", name, r.MessageID, decodeErr, schemaErr)
			}
			if decodeErr == nil {
				if err := obs.Validate(reg.Kind(obs.Primitive)); err != nil {
					if name != "invalid-numeric-string-value.json" {
						t.Errorf("%s %s: rejected by kind: %v", name, r.MessageID, err)
					}
					continue
				}
			} else {
				rejected++
			}
		}
	}
	if rejected < 5 {
		t.Fatalf("only %d fixture records rejected; the invalid fixtures are not exercised", rejected)
	}
}

func TestInvalidFixturesFailTheMessageSchema(t *testing.T) {
	v := mustValidator(t)
	fixtures := mustFixtures(t)
	for _, name := range []string{
		"invalid-confidence-out-of-range.json",
		"invalid-missing-primitive.json",
		"invalid-ts-string.json",
		"malformed-body-not-json.json",
	} {
		f, ok := fixtures[name]
		if !ok {
			t.Fatalf("fixture %s is missing", name)
		}
		for _, r := range f.Records {
			if err := v.Message([]byte(r.Body)); err == nil {
				t.Errorf("%s: the schema accepts it", name)
			}
		}
	}
	// A string under a numeric primitive is invalid only by the registry,
	// which JSON Schema does not know.
	for _, r := range fixtures["invalid-numeric-string-value.json"].Records {
		if err := v.Message([]byte(r.Body)); err != nil {
			t.Errorf("invalid-numeric-string-value.json: the schema cannot know the registry, yet rejects it: %v", err)
		}
	}
}

// TestMessageSchemaAgreesWithDecode compares the two on bodies made to
// probe each rule.
func TestMessageSchemaAgreesWithDecode(t *testing.T) {
	v := mustValidator(t)
	base := `"attacker_uuid":"att-1","primitive":"motor.input_modality","evidence_ref":"shard:a#s1","ts":1714054175.367,"value":"typed"`
	env := func(extra string) string {
		if extra == "" {
			return "{" + base + "}"
		}
		return "{" + base + "," + extra + "}"
	}
	sns := func(inner string) string {
		b, _ := json.Marshal(map[string]any{"Type": "Notification", "MessageId": "m-1", "Message": inner})
		return string(b)
	}
	cases := []struct {
		name  string
		body  string
		valid bool
	}{
		{"minimal envelope", env(""), true},
		{"full envelope", env(`"id":"obs-1","confidence":0.8,"window":{"start_ts":1,"end_ts":2},"source":"behave-shell","v":1,"identity_ref":"x"`), true},
		{"nulls where optional", env(`"id":null,"confidence":null,"window":null,"source":null,"v":null,"identity_ref":null`), true},
		{"null value", `{"attacker_uuid":"a","primitive":"a.b","evidence_ref":"r","ts":1,"value":null}`, true},
		{"object value", `{"attacker_uuid":"a","primitive":"a.b","evidence_ref":"r","ts":1,"value":{"k":[1,2]}}`, true},
		{"unknown fields are ignored", env(`"extra":{"x":1}`), true},
		{"eventbridge", `{"detail-type":"attacker.observation","source":"decnet.behave","detail":` + env("") + `}`, true},
		{"sns", sns(env("")), true},
		{"missing value", `{"attacker_uuid":"a","primitive":"a.b","evidence_ref":"r","ts":1}`, false},
		{"missing attacker", `{"primitive":"a.b","evidence_ref":"r","ts":1,"value":1}`, false},
		{"blank attacker", `{"attacker_uuid":"  ","primitive":"a.b","evidence_ref":"r","ts":1,"value":1}`, false},
		{"blank evidence_ref", `{"attacker_uuid":"a","primitive":"a.b","evidence_ref":"","ts":1,"value":1}`, false},
		{"one-segment primitive", `{"attacker_uuid":"a","primitive":"motor","evidence_ref":"r","ts":1,"value":1}`, false},
		{"empty segment", `{"attacker_uuid":"a","primitive":"motor..x","evidence_ref":"r","ts":1,"value":1}`, false},
		{"space in primitive", `{"attacker_uuid":"a","primitive":"motor.input modality","evidence_ref":"r","ts":1,"value":1}`, false},
		{"primitive too long", `{"attacker_uuid":"a","primitive":"a.` + strings.Repeat("b", 127) + `","evidence_ref":"r","ts":1,"value":1}`, false},
		{"ts string", `{"attacker_uuid":"a","primitive":"a.b","evidence_ref":"r","ts":"1","value":1}`, false},
		{"ts null", `{"attacker_uuid":"a","primitive":"a.b","evidence_ref":"r","ts":null,"value":1}`, false},
		{"confidence above 1", env(`"confidence":1.01`), false},
		{"confidence negative", env(`"confidence":-0.1`), false},
		{"confidence string", env(`"confidence":"high"`), false},
		{"window without end", env(`"window":{"start_ts":1}`), false},
		{"window not an object", env(`"window":[1,2]`), false},
		{"v zero", env(`"v":0`), false},
		{"v string", env(`"v":"1"`), false},
		{"id number", env(`"id":7`), false},
		{"source too long", env(`"source":"` + strings.Repeat("s", 257) + `"`), false},
		{"not an object", `[1,2]`, false},
		{"eventbridge detail not an object", `{"detail-type":"x","detail":"{}"}`, false},
		{"eventbridge detail invalid", `{"detail-type":"x","detail":{"primitive":"a.b"}}`, false},
		{"eventbridge without detail-type", `{"detail":` + env("") + `}`, false},
		{"envelope fields win over a wrapper", `{"primitive":"bad","detail-type":"x","detail":` + env("") + `}`, false},
		{"sns message not a string", `{"Type":"Notification","Message":` + env("") + `}`, false},
		{"sns message not JSON", sns("primitive=a.b"), false},
		{"sns message invalid", sns(`{"primitive":"a.b"}`), false},
		{"sns inside eventbridge is not unwrapped twice", `{"detail-type":"x","detail":` + sns(env("")) + `}`, false},
		{"bus envelope", `{"v":1,"id":"ab12","topic":"attacker.observation.motor.input_modality","type":"observation","ts":2,"payload":` + env("") + `}`, true},
		{"bus envelope on another topic", `{"v":1,"topic":"attacker.session.ended","payload":` + env("") + `}`, false},
		{"bus payload invalid", `{"v":1,"topic":"attacker.observation.motor.input_modality","payload":{"primitive":"a.b"}}`, false},
		{"bus payload not an object", `{"v":1,"topic":"attacker.observation.motor.input_modality","payload":"x"}`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, decodeErr := attribution.DecodeMessage([]byte(c.body))
			if (decodeErr == nil) != c.valid {
				t.Fatalf("DecodeMessage: %v; the case expects valid=%v", decodeErr, c.valid)
			}
			schemaErr := v.Message([]byte(c.body))
			if (schemaErr == nil) != c.valid {
				t.Fatalf("schema: %v; want valid=%v", schemaErr, c.valid)
			}
		})
	}
}

// TestMessageSchemaLimits records the rules JSON Schema cannot express:
// the engine rejects these bodies, the schema accepts them.
func TestMessageSchemaLimits(t *testing.T) {
	v := mustValidator(t)
	for name, body := range map[string]string{
		"window ends before it starts":                  `{"attacker_uuid":"a","primitive":"a.b","evidence_ref":"r","ts":1,"value":1,"window":{"start_ts":2,"end_ts":1}}`,
		"attacker over 256 bytes, under 256 characters": `{"attacker_uuid":"` + strings.Repeat("é", 200) + `","primitive":"a.b","evidence_ref":"r","ts":1,"value":1}`,
		"value over 1024 bytes":                         `{"attacker_uuid":"a","primitive":"a.b","evidence_ref":"r","ts":1,"value":"` + strings.Repeat("x", 1100) + `"}`,
		"v not a whole number in Go's reading":          `{"attacker_uuid":"a","primitive":"a.b","evidence_ref":"r","ts":1,"value":1,"v":1.0}`,
		"bus topic names another primitive":             `{"topic":"attacker.observation.c.d","payload":{"attacker_uuid":"a","primitive":"a.b","evidence_ref":"r","ts":1,"value":1}}`,
	} {
		if _, err := attribution.DecodeMessage([]byte(body)); err == nil {
			t.Errorf("%s: DecodeMessage accepts it; move the case to TestMessageSchemaAgreesWithDecode", name)
		}
		if err := v.Message([]byte(body)); err != nil {
			t.Errorf("%s: the schema now rejects it (%v); move the case to TestMessageSchemaAgreesWithDecode", name, err)
		}
	}
}

// recorder keeps every published event.
type recorder struct {
	mu     sync.Mutex
	events []attribution.Event
}

func (r *recorder) Publish(_ context.Context, events []attribution.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, events...)
	return nil
}

// streamCase is one line of testdata/public-stream.jsonl.
type streamCase struct {
	Registry map[string]string `json:"registry"`
	Messages []json.RawMessage `json:"messages"`
}

// TestReplayedEventsMatchTheDetailSchemas runs every case of the public
// stream through the processor and validates every event detail emitted.
func TestReplayedEventsMatchTheDetailSchemas(t *testing.T) {
	v := mustValidator(t)
	f, err := os.Open(filepath.Join("..", "..", "testdata", "public-stream.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		var c streamCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("case %d: %v", line, err)
		}
		reg := attribution.BuiltinRegistry()
		if len(c.Registry) > 0 {
			raw, _ := json.Marshal(c.Registry)
			if reg, err = reg.WithOverrides(raw); err != nil {
				t.Fatalf("case %d: %v", line, err)
			}
		}
		rec := mustReplay(t, reg, c.Messages)
		for i, m := range c.Messages {
			if _, decodeErr := attribution.DecodeMessage(m); (decodeErr == nil) != (v.Message(m) == nil) {
				t.Errorf("case %d message %d: DecodeMessage %v, schema %v", line, i, decodeErr, v.Message(m))
			}
		}
		for _, e := range rec.events {
			counts[e.DetailType]++
			if err := v.Detail(e.DetailType, e.Detail); err != nil {
				t.Errorf("case %d: %s %s: %v", line, e.DetailType, e.Detail, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if line == 0 || counts[attribution.EventStateChanged] < 100 {
		t.Fatalf("%d cases gave %v events: too few to mean anything", line, counts)
	}
	// The public stream raises no suspicion; check that event on a stream
	// made to raise one.
	var msgs []json.RawMessage
	for i, val := range []string{"a", "b", "a", "b", "a", "b"} {
		for _, p := range []string{"motor.input_modality", "environmental.locale"} {
			msgs = append(msgs, json.RawMessage(fmt.Sprintf(
				`{"attacker_uuid":"att-9","primitive":%q,"evidence_ref":"r%d","ts":%d,"value":%q}`, p, i, 100+i, val)))
		}
	}
	rec := mustReplay(t, attribution.BuiltinRegistry(), msgs)
	suspected := 0
	for _, e := range rec.events {
		if err := v.Detail(e.DetailType, e.Detail); err != nil {
			t.Errorf("%s %s: %v", e.DetailType, e.Detail, err)
		}
		if e.DetailType == attribution.EventMultiActorSuspected {
			suspected++
		}
	}
	if suspected != 1 {
		t.Fatalf("the alternating stream raised %d suspicions, want 1", suspected)
	}
}

func mustReplay(tb testing.TB, reg attribution.Registry, msgs []json.RawMessage) *recorder {
	tb.Helper()
	store := memstore.New()
	rec := &recorder{}
	p := &attribution.Processor{
		Store: store, Identities: store, Publisher: rec, Registry: reg,
		Thresholds: attribution.DefaultThresholds(), Concurrency: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for i, m := range msgs {
		// Bad messages are part of the stream; they emit nothing.
		_ = p.Process(context.Background(), []attribution.Message{{ID: fmt.Sprint(i), Body: m}})
	}
	return rec
}

// TestDetailSchemasReject checks the detail schemas are not vacuous: each
// mutation of a valid detail breaks a rule.
func TestDetailSchemasReject(t *testing.T) {
	v := mustValidator(t)
	old := attribution.StateStable
	valid := attribution.StateChanged{
		EventID: attribution.EventID(attribution.EventStateChanged, "id|a.b", 2), Sequence: 2,
		IdentityUUID: "id", AttackerUUID: "att", Primitive: "a.b", OldState: &old,
		NewState: attribution.StateDrifting, CurrentValue: `"x"`, Confidence: 0.8, ObservationCount: 7, TS: 12.5,
	}
	mustJSON := func(x any) map[string]any {
		b, _ := json.Marshal(x)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return m
	}
	check := func(detailType, name string, m map[string]any, wantValid bool) {
		b, _ := json.Marshal(m)
		if err := v.Detail(detailType, b); (err == nil) != wantValid {
			t.Errorf("%s: %s: error %v, want valid=%v", detailType, name, err, wantValid)
		}
	}
	check(attribution.EventStateChanged, "valid", mustJSON(valid), true)
	first := mustJSON(valid)
	first["old_state"] = nil
	check(attribution.EventStateChanged, "first state", first, true)
	for name, mutate := range map[string]func(map[string]any){
		"same old and new state":  func(m map[string]any) { m["old_state"] = m["new_state"] },
		"unknown state word":      func(m map[string]any) { m["new_state"] = "steady" },
		"confidence above 1":      func(m map[string]any) { m["confidence"] = 1.2 },
		"no observations":         func(m map[string]any) { m["observation_count"] = 0 },
		"sequence 0":              func(m map[string]any) { m["sequence"] = 0 },
		"event id not hex":        func(m map[string]any) { m["event_id"] = "evt-1" },
		"missing current_value":   func(m map[string]any) { delete(m, "current_value") },
		"undocumented field":      func(m map[string]any) { m["state"] = "stable" },
		"ts as text":              func(m map[string]any) { m["ts"] = "2024-01-01T00:00:00Z" },
		"primitive without a dot": func(m map[string]any) { m["primitive"] = "ab" },
	} {
		m := mustJSON(valid)
		mutate(m)
		check(attribution.EventStateChanged, name, m, false)
	}

	suspicion := attribution.MultiActorSuspected{
		EventID: attribution.EventID(attribution.EventMultiActorSuspected, "id", 1), Sequence: 1,
		IdentityUUID: "id", AttackerUUID: "att", Primitives: []string{"a.b", "c.d"},
		EvidenceSummary: "2 primitives flagged multi_actor", Confidence: 0.6, TS: 3,
	}
	check(attribution.EventMultiActorSuspected, "valid", mustJSON(suspicion), true)
	for name, mutate := range map[string]func(map[string]any){
		"no primitives":        func(m map[string]any) { m["primitives"] = []string{} },
		"repeated primitive":   func(m map[string]any) { m["primitives"] = []string{"a.b", "a.b"} },
		"confidence negative":  func(m map[string]any) { m["confidence"] = -1 },
		"missing summary":      func(m map[string]any) { delete(m, "evidence_summary") },
		"state_changed fields": func(m map[string]any) { m["new_state"] = "multi_actor" },
	} {
		m := mustJSON(suspicion)
		mutate(m)
		check(attribution.EventMultiActorSuspected, name, m, false)
	}
	if err := v.Detail("attribution.profile.unknown", []byte(`{}`)); err == nil {
		t.Error("an unknown detail-type validated")
	}
}

// TestIdentityStreamEventsMatchTheDetailSchemas: the events a membership
// change causes (transitions recomputed from the union, suspicions, and
// attribution.identity.rekeyed) match their schemas.
func TestIdentityStreamEventsMatchTheDetailSchemas(t *testing.T) {
	v := mustValidator(t)
	var msgs []json.RawMessage
	for i, val := range []string{"a", "b", "a", "b", "a", "b"} {
		for j, p := range []string{"motor.input_modality", "environmental.locale"} {
			attacker := []string{"att-1", "att-2"}[i%2]
			msgs = append(msgs, json.RawMessage(fmt.Sprintf(
				`{"attacker_uuid":%q,"primitive":%q,"evidence_ref":"r%d-%d","ts":%d,"value":%q}`, attacker, p, i, j, 100+i, val)))
		}
	}
	for i, e := range []string{
		`{"v":1,"id":"e1","topic":"identity.formed","ts":200,"payload":{"identity_uuid":"I1","observation_uuids":["att-1"]}}`,
		`{"v":1,"id":"e2","topic":"identity.formed","ts":201,"payload":{"identity_uuid":"I2","observation_uuids":["att-2"]}}`,
		`{"v":1,"id":"e3","topic":"identity.merged","ts":202,"payload":{"winner_uuid":"I1","loser_uuid":"I2"}}`,
		`{"v":1,"id":"e4","topic":"identity.unmerged","ts":203,"payload":{"resurrected_uuid":"I2","former_winner_uuid":"I1"}}`,
	} {
		msgs = slices.Insert(msgs, 3*i+2, json.RawMessage(e))
	}
	rec := mustReplay(t, attribution.BuiltinRegistry(), msgs)
	counts := map[string]int{}
	for _, e := range rec.events {
		counts[e.DetailType]++
		if err := v.Detail(e.DetailType, e.Detail); err != nil {
			t.Errorf("%s %s: %v", e.DetailType, e.Detail, err)
		}
	}
	if counts[attribution.EventIdentityRekeyed] < 3 || counts[attribution.EventMultiActorSuspected] < 1 {
		t.Fatalf("events by type %v: want rekeyed events and a suspicion", counts)
	}
}

// TestIdentityEventSchemaAgreesWithDecode holds the message schema to the
// decoder on identity events: it accepts exactly what attribution.Decode
// accepts, rule by rule.
func TestIdentityEventSchemaAgreesWithDecode(t *testing.T) {
	v := mustValidator(t)
	ev := func(topic, payload, extra string) string {
		if extra != "" {
			extra = "," + extra
		}
		return fmt.Sprintf(`{"v":1,"id":"e-1","topic":%q,"ts":1714054175.5,"payload":%s%s}`, topic, payload, extra)
	}
	many := func(n int) string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("%q", fmt.Sprint("att-", i))
		}
		return `{"identity_uuid":"I1","observation_uuids":[` + strings.Join(ids, ",") + `]}`
	}
	formed, merged := "identity.formed", "identity.merged"
	cases := []struct {
		name  string
		body  string
		valid bool
	}{
		{"formed", ev(formed, `{"identity_uuid":"I1","observation_uuids":["a1","a2"]}`, `"type":"formed"`), true},
		{"linked", ev("identity.observation.linked", `{"identity_uuid":"I1","observation_uuid":"a1"}`, `"type":"observation.linked"`), true},
		{"merged", ev(merged, `{"winner_uuid":"I1","loser_uuid":"I2"}`, ""), true},
		{"unmerged", ev("identity.unmerged", `{"resurrected_uuid":"I2","former_winner_uuid":"I1"}`, `"type":null`), true},
		{"campaign assigned, read for nothing", `{"topic":"identity.campaign.assigned","payload":{"campaign":7}}`, true},
		{"unknown payload fields are ignored", ev(merged, `{"winner_uuid":"I1","loser_uuid":"I2","score":0.9}`, ""), true},
		{"v null", `{"v":null,"id":"e","topic":"identity.merged","ts":1,"payload":{"winner_uuid":"I1","loser_uuid":"I2"}}`, true},
		{"1000 attackers", ev(formed, many(1000), ""), true},
		{"another identity topic", ev("identity.renamed", `{}`, ""), false},
		{"no id", `{"topic":"identity.merged","ts":1,"payload":{"winner_uuid":"I1","loser_uuid":"I2"}}`, false},
		{"blank id", `{"id":" ","topic":"identity.merged","ts":1,"payload":{"winner_uuid":"I1","loser_uuid":"I2"}}`, false},
		{"no ts", `{"id":"e","topic":"identity.merged","payload":{"winner_uuid":"I1","loser_uuid":"I2"}}`, false},
		{"ts a string", `{"id":"e","topic":"identity.merged","ts":"1","payload":{"winner_uuid":"I1","loser_uuid":"I2"}}`, false},
		{"type of another topic", ev(merged, `{"winner_uuid":"I1","loser_uuid":"I2"}`, `"type":"formed"`), false},
		{"v zero", `{"v":0,"id":"e","topic":"identity.merged","ts":1,"payload":{"winner_uuid":"I1","loser_uuid":"I2"}}`, false},
		{"v a string", `{"v":"1","id":"e","topic":"identity.merged","ts":1,"payload":{"winner_uuid":"I1","loser_uuid":"I2"}}`, false},
		{"payload an array", ev(merged, `[]`, ""), false},
		{"formed without attackers", ev(formed, `{"identity_uuid":"I1","observation_uuids":[]}`, ""), false},
		{"formed with 1001 attackers", ev(formed, many(1001), ""), false},
		{"formed attackers not an array", ev(formed, `{"identity_uuid":"I1","observation_uuids":"a1"}`, ""), false},
		{"formed without identity", ev(formed, `{"observation_uuids":["a1"]}`, ""), false},
		{"a uuid starting with #", ev(merged, `{"winner_uuid":"#identity","loser_uuid":"I2"}`, ""), false},
		{"a blank uuid", ev("identity.observation.linked", `{"identity_uuid":"I1","observation_uuid":"  "}`, ""), false},
		{"a uuid not a string", ev(merged, `{"winner_uuid":7,"loser_uuid":"I2"}`, ""), false},
		{"a uuid too long", ev(merged, `{"winner_uuid":"`+strings.Repeat("w", 257)+`","loser_uuid":"I2"}`, ""), false},
		{"merged without loser", ev(merged, `{"winner_uuid":"I1"}`, ""), false},
		{"unmerged without former winner", ev("identity.unmerged", `{"resurrected_uuid":"I2"}`, ""), false},
	}
	for _, c := range cases {
		d, decodeErr := attribution.Decode([]byte(c.body))
		if (decodeErr == nil) != c.valid {
			t.Fatalf("%s: Decode %v; the case expects valid=%v", c.name, decodeErr, c.valid)
		}
		if c.valid && d.Identity == nil && d.Ignored == "" {
			t.Fatalf("%s: decoded as an observation", c.name)
		}
		if err := v.Message([]byte(c.body)); (err == nil) != c.valid {
			t.Errorf("%s: schema error %v, Decode error %v", c.name, err, decodeErr)
		}
	}
	// What JSON Schema cannot say: two properties differ.
	same := ev(merged, `{"winner_uuid":"I1","loser_uuid":"I1"}`, "")
	if _, err := attribution.Decode([]byte(same)); err == nil {
		t.Error("Decode accepts a merge into itself")
	}
	if err := v.Message([]byte(same)); err != nil {
		t.Errorf("the schema now rejects a merge into itself (%v): move the case above", err)
	}
}
