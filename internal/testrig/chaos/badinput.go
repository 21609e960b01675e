package chaos

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/config"
)

// BadInput is one class of malformed observation message: a valid
// envelope with some fields replaced (Fields), or a body of its own
// (Custom).
type BadInput struct {
	Class string
	// Fields replace those of a valid envelope; a nil value removes the
	// field, a json.RawMessage is written as is.
	Fields map[string]any
	// Custom builds the whole body instead.
	Custom func(tag string) string
}

// Body returns a message of the class. tag makes it unique; it goes where
// it changes neither the error nor the field blamed.
func (b BadInput) Body(tag string) string {
	if b.Custom != nil {
		return b.Custom(tag)
	}
	env := goodEnvelope(tag)
	for k, v := range b.Fields {
		if v == nil {
			delete(env, k)
			continue
		}
		env[k] = v
	}
	return mustJSON(env)
}

// Example describes the message briefly: the replaced fields, or the
// start of the body.
func (b BadInput) Example() string {
	if b.Custom != nil {
		return shorten(b.Custom("bad-1"), 70)
	}
	keys := make([]string, 0, len(b.Fields))
	for k := range b.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		if b.Fields[k] == nil {
			parts = append(parts, "no "+strconv.Quote(k))
			continue
		}
		parts = append(parts, strconv.Quote(k)+":"+shorten(mustJSON(b.Fields[k]), 40))
	}
	return strings.Join(parts, ", ")
}

// goodEnvelope is a valid observation with tag as its id.
func goodEnvelope(tag string) map[string]any {
	return map[string]any{
		"id":            tag,
		"primitive":     "motor.input_modality",
		"value":         "typed",
		"confidence":    0.8,
		"window":        map[string]any{"start_ts": 1714054145.367, "end_ts": 1714054175.367},
		"source":        "behave-shell",
		"evidence_ref":  "shard:att-bad#s001",
		"v":             1,
		"ts":            1714054175.367,
		"attacker_uuid": "att-bad",
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("chaos: encode %T: %v", v, err)) // only fixed, encodable literals reach here
	}
	return string(b)
}

// BadInputs returns the catalogue of malformed messages, one per class.
func BadInputs() []BadInput {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	valid := func(tag string) string { return BadInput{}.Body(tag) }
	return []BadInput{
		{Class: "not JSON", Custom: func(tag string) string { return "not json " + tag }},
		{Class: "JSON, but not an object", Custom: func(tag string) string { return mustJSON([]string{"obs", tag}) }},
		{Class: "trailing data after the object", Custom: func(tag string) string { return valid(tag) + ` {"again":true}` }},
		{Class: "wrong envelope: EventBridge event whose detail is not an object", Custom: func(tag string) string {
			return mustJSON(map[string]any{"detail-type": "behave.observation", "detail": valid(tag)})
		}},
		{Class: "wrong envelope: SNS notification whose Message is not a string", Custom: func(tag string) string {
			return mustJSON(map[string]any{"Type": "Notification", "Message": goodEnvelope(tag)})
		}},
		{Class: "wrong envelope: SNS Message that is not JSON", Custom: func(tag string) string {
			return mustJSON(map[string]any{"Type": "Notification", "Message": "observation " + tag})
		}},
		{Class: "wrong envelope: unknown wrapper", Custom: func(tag string) string {
			return mustJSON(map[string]any{"payload": goodEnvelope(tag)})
		}},
		{Class: "missing field: attacker_uuid", Fields: map[string]any{"attacker_uuid": nil}},
		{Class: "missing field: primitive", Fields: map[string]any{"primitive": nil}},
		{Class: "missing field: evidence_ref", Fields: map[string]any{"evidence_ref": nil}},
		{Class: "missing field: ts", Fields: map[string]any{"ts": nil}},
		{Class: "missing field: value", Fields: map[string]any{"value": nil}},
		{Class: "blank attacker_uuid", Fields: map[string]any{"attacker_uuid": "   "}},
		{Class: "wrong type: attacker_uuid a number", Fields: map[string]any{"attacker_uuid": 42}},
		{Class: "wrong type: ts a string", Fields: map[string]any{"ts": "1714054175.367"}},
		{Class: "wrong type: confidence a string", Fields: map[string]any{"confidence": "high"}},
		{Class: "wrong type: window not an object", Fields: map[string]any{"window": []float64{1, 2}}},
		{Class: "wrong type: v a string", Fields: map[string]any{"v": "1"}},
		{Class: "primitive not a dotted name", Fields: map[string]any{"primitive": "modality"}},
		{Class: "primitive with a forbidden character", Fields: map[string]any{"primitive": "motor.input modality"}},
		{Class: "non-finite number: ts overflows float64", Fields: map[string]any{"ts": raw("1e999")}},
		{Class: "non-finite number: window.end_ts overflows float64", Fields: map[string]any{"window": raw(`{"start_ts":1,"end_ts":-1e400}`)}},
		{Class: "confidence out of range", Fields: map[string]any{"confidence": 1.5}},
		{Class: "window ends before it starts", Fields: map[string]any{"window": raw(`{"start_ts":20,"end_ts":10}`)}},
		{Class: "oversized value", Fields: map[string]any{"value": strings.Repeat("x", 2000)}},
		{Class: "oversized evidence_ref", Fields: map[string]any{"evidence_ref": strings.Repeat("e", 300)}},
		{Class: "oversized message", Fields: map[string]any{"source": strings.Repeat("s", 17000)}},
		{Class: "numeric primitive with a string value", Fields: map[string]any{"primitive": "toolchain.c2.beacon_interval_ms", "value": "fast"}},
		{Class: "numeric primitive with an array value", Fields: map[string]any{"primitive": "toolchain.c2.beacon_interval_ms", "value": []int{100, 200}}},
	}
}

// Rejection is what the function makes of a message: nil for a valid one.
func Rejection(body string, reg attribution.Registry) error {
	obs, err := attribution.DecodeMessage([]byte(body))
	if err == nil {
		err = obs.Validate(reg.Kind(obs.Primitive))
	}
	return err
}

// BadRegistry is one class of bad primitive registry: the function does
// not start with it.
type BadRegistry struct {
	Class    string
	Registry string // the ATTRIBUTION_REGISTRY value (the CLI's --registry file content)
}

// BadRegistries returns the catalogue of bad registries.
func BadRegistries() []BadRegistry {
	return []BadRegistry{
		{"registry: unknown value kind", `{"motor.input_modality":"text"}`},
		{"registry: not a JSON object", `["motor.input_modality"]`},
		{"registry: kind not a string", `{"motor.input_modality":3}`},
		{"registry: primitive not a dotted name", `{"modality":"categorical"}`},
	}
}

// StartupError returns the configuration error the function stops with
// when ATTRIBUTION_REGISTRY is registry.
func StartupError(registry string) error {
	env := map[string]string{
		"IDENTITIES_TABLE": "identities", "OBSERVATIONS_TABLE": "observations",
		"STATES_TABLE": "states", "EVENT_BUS_NAME": "bus", "ATTRIBUTION_REGISTRY": registry,
	}
	_, err := config.FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	return err
}

// BadInputTable renders the catalogue as a markdown table, every error
// text produced by the function's own decoder and configuration reader.
func BadInputTable() string {
	reg := attribution.BuiltinRegistry()
	var b strings.Builder
	b.WriteString("<!-- Generated by `go test ./internal/testrig/chaos -run TestBadInputCatalogue -update`; do not edit. -->\n\n")
	b.WriteString("| class | example message | `attribution.error_field` | error (exact text) | ends up |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, bi := range BadInputs() {
		err := Rejection(bi.Body("bad-1"), reg)
		field, text := "", "(accepted)"
		if err != nil {
			field, text = attribution.ErrorField(err), err.Error()
		}
		fmt.Fprintf(&b, "| %s | %s | `%s` | %s | DLQ at once ¹ |\n", bi.Class, cell(bi.Example()), field, cell(text))
	}
	for _, br := range BadRegistries() {
		text := "(accepted)"
		if err := StartupError(br.Registry); err != nil {
			text = err.Error()
		}
		fmt.Fprintf(&b, "| %s | %s | — | %s | function does not start ² |\n", br.Class, cell(br.Registry), cell(text))
	}
	b.WriteString(`
¹ The function logs ` + "`rejected invalid message`" + ` (with ` + "`message_id`" + `, ` + "`field`" + ` and ` + "`reason`" + `) and sends the
message, unchanged, to the dead-letter queue named by ` + "`DEAD_LETTER_QUEUE_URL`" + ` with the message attributes
` + "`attribution.error_field`" + `, ` + "`attribution.error_reason`" + ` (the error text above) and
` + "`attribution.source_message_id`" + `; the batch does not fail. If that send fails, the message is reported as a batch
item failure and the queue's redrive policy moves it to the same dead-letter queue after ` + "`MaxReceiveCount`" + `
receives (then without the attributes: the reason is in the log lines of each receive).

² The configuration is read once at cold start: the function logs ` + "`invalid configuration`" + ` with the error and
exits, so every invocation fails and no message is processed; messages wait in the queue and, after
` + "`MaxReceiveCount`" + ` receives, move to the dead-letter queue. The replay CLI (` + "`attribution replay --registry FILE`" + `)
stops with the same error, prefixed ` + "`registry file FILE: `" + ` instead of ` + "`ATTRIBUTION_REGISTRY: `" + `.
`)
	return b.String()
}

// cell escapes text for a markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	s = strings.ReplaceAll(s, "\n", " ")
	return "`" + strings.ReplaceAll(s, "`", "'") + "`"
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
