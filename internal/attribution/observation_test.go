package attribution_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"decnet-attribution/internal/attribution"
)

// validEnvelope is a bare observation message, as BEHAVE sends it.
const validEnvelope = `{"id":"obs-1","primitive":"motor.input_modality","value":"typed","confidence":0.8,` +
	`"window":{"start_ts":1714054145.367,"end_ts":1714054175.367},"source":"behave-shell",` +
	`"evidence_ref":"shard:att-c248#s002","v":1,"ts":1714054175.367,"attacker_uuid":"att-c248"}`

// envelopeWith returns validEnvelope with fields set (raw JSON) or, for a
// nil value, removed.
func envelopeWith(tb testing.TB, fields map[string]json.RawMessage) []byte {
	tb.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(validEnvelope), &m); err != nil {
		tb.Fatal(err)
	}
	for k, v := range fields {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatalf("envelope: %v", err)
	}
	return b
}

func mustDecode(tb testing.TB, body []byte) attribution.Observation {
	tb.Helper()
	obs, err := attribution.DecodeMessage(body)
	if err != nil {
		tb.Fatalf("decode %s: %v", body, err)
	}
	return obs
}

func quoted(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// assertInvalid checks that err is an invalid-input *attribution.Error
// about field, whose text says reason.
func assertInvalid(tb testing.TB, err error, field, reason string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("no error; want %s: …%s…", field, reason)
	}
	var e *attribution.Error
	if !errors.As(err, &e) {
		tb.Fatalf("error %v (%T) is not an *attribution.Error", err, err)
	}
	if got := attribution.ErrorCode(err); got != attribution.EINVALID {
		tb.Errorf("code %q, want %q (%v)", got, attribution.EINVALID, err)
	}
	if got := attribution.ErrorField(err); got != field {
		tb.Errorf("field %q, want %q (%v)", got, field, err)
	}
	if !strings.Contains(err.Error(), reason) {
		tb.Errorf("error %q does not say %q", err, reason)
	}
}

func TestDecodeMessageRejects(t *testing.T) {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	with := func(fields map[string]json.RawMessage) func(testing.TB) []byte {
		return func(tb testing.TB) []byte { return envelopeWith(tb, fields) }
	}
	body := func(s string) func(testing.TB) []byte { return func(testing.TB) []byte { return []byte(s) } }
	cases := []struct {
		name   string
		body   func(testing.TB) []byte
		field  string
		reason string
	}{
		{"not JSON", body("obs-1 typed"), "body", "not a JSON object"},
		{"empty body", body(""), "body", "not a JSON object"},
		{"JSON array", body(`[` + validEnvelope + `]`), "body", "not a JSON object"},
		{"JSON string", body(`"motor.input_modality"`), "body", "not a JSON object"},
		{"JSON null", body(`null`), "attacker_uuid", "is required"},
		{"truncated", body(validEnvelope[:len(validEnvelope)-1]), "body", "not a JSON object"},
		{"trailing garbage", body(validEnvelope + " x"), "body", "trailing data"},
		{"trailing object", body(validEnvelope + `{}`), "body", "trailing data"},
		{"trailing close brace", body(validEnvelope + `}`), "body", "trailing data"},
		{"trailing close bracket", body(validEnvelope + ` ]`), "body", "trailing data"},
		{"oversized message", with(map[string]json.RawMessage{"padding": quoted(strings.Repeat("x", attribution.MaxMessageBytes))}), "body", "more than the 16384 allowed"},

		{"missing attacker_uuid", with(map[string]json.RawMessage{"attacker_uuid": nil}), "attacker_uuid", "is required"},
		{"null attacker_uuid", with(map[string]json.RawMessage{"attacker_uuid": raw("null")}), "attacker_uuid", "is required"},
		{"attacker_uuid number", with(map[string]json.RawMessage{"attacker_uuid": raw("248")}), "attacker_uuid", "must be a string"},
		{"empty attacker_uuid", with(map[string]json.RawMessage{"attacker_uuid": quoted("")}), "attacker_uuid", "must not be empty"},
		{"blank attacker_uuid", with(map[string]json.RawMessage{"attacker_uuid": quoted(" \t")}), "attacker_uuid", "must not be empty"},
		{"oversized attacker_uuid", with(map[string]json.RawMessage{"attacker_uuid": quoted(strings.Repeat("a", attribution.MaxAttackerBytes+1))}), "attacker_uuid", "more than the 256 allowed"},

		{"missing primitive", with(map[string]json.RawMessage{"primitive": nil}), "primitive", "is required"},
		{"empty primitive", with(map[string]json.RawMessage{"primitive": quoted("")}), "primitive", "must not be empty"},
		{"primitive array", with(map[string]json.RawMessage{"primitive": raw(`["motor","x"]`)}), "primitive", "must be a string"},
		{"primitive one segment", with(map[string]json.RawMessage{"primitive": quoted("motor")}), "primitive", "not a dotted name"},
		{"primitive empty segment", with(map[string]json.RawMessage{"primitive": quoted("motor..x")}), "primitive", "empty segment"},
		{"primitive leading dot", with(map[string]json.RawMessage{"primitive": quoted(".motor")}), "primitive", "empty segment"},
		{"primitive trailing dot", with(map[string]json.RawMessage{"primitive": quoted("motor.")}), "primitive", "empty segment"},
		{"primitive with space", with(map[string]json.RawMessage{"primitive": quoted("motor.in put")}), "primitive", "character ' '"},
		{"primitive with slash", with(map[string]json.RawMessage{"primitive": quoted("motor/input.x")}), "primitive", "character '/'"},
		{"primitive non-ASCII", with(map[string]json.RawMessage{"primitive": quoted("motor.entrée")}), "primitive", "character 'é'"},
		{"oversized primitive", with(map[string]json.RawMessage{"primitive": quoted("a." + strings.Repeat("b", attribution.MaxPrimitiveBytes))}), "primitive", "more than the 128 allowed"},

		{"missing evidence_ref", with(map[string]json.RawMessage{"evidence_ref": nil}), "evidence_ref", "is required"},
		{"empty evidence_ref", with(map[string]json.RawMessage{"evidence_ref": quoted("")}), "evidence_ref", "must not be empty"},
		{"evidence_ref object", with(map[string]json.RawMessage{"evidence_ref": raw(`{"shard":"x"}`)}), "evidence_ref", "must be a string"},
		{"oversized evidence_ref", with(map[string]json.RawMessage{"evidence_ref": quoted(strings.Repeat("r", attribution.MaxEvidenceRefBytes+1))}), "evidence_ref", "more than the 256 allowed"},

		{"missing ts", with(map[string]json.RawMessage{"ts": nil}), "ts", "is required"},
		{"null ts", with(map[string]json.RawMessage{"ts": raw("null")}), "ts", "is required"},
		{"ts string", with(map[string]json.RawMessage{"ts": quoted("1714054175.367")}), "ts", "must be a finite number"},
		{"ts bool", with(map[string]json.RawMessage{"ts": raw("true")}), "ts", "must be a finite number"},
		{"ts non-finite", with(map[string]json.RawMessage{"ts": raw("1e999")}), "ts", "must be a finite number"},
		{"ts negative non-finite", with(map[string]json.RawMessage{"ts": raw("-1e999")}), "ts", "must be a finite number"},

		{"missing value", with(map[string]json.RawMessage{"value": nil}), "value", "is required"},
		{"value non-finite", with(map[string]json.RawMessage{"value": raw("1e999")}), "value", "not a JSON value"},
		{"value nested non-finite", with(map[string]json.RawMessage{"value": raw(`[1, 1e999]`)}), "value", "not a JSON value"},
		{"oversized value", with(map[string]json.RawMessage{"value": quoted(strings.Repeat("v", attribution.MaxValueBytes))}), "value", "more than the 1024 allowed"},

		{"confidence above 1", with(map[string]json.RawMessage{"confidence": raw("1.5")}), "confidence", "between 0 and 1"},
		{"confidence below 0", with(map[string]json.RawMessage{"confidence": raw("-0.1")}), "confidence", "between 0 and 1"},
		{"confidence string", with(map[string]json.RawMessage{"confidence": quoted("high")}), "confidence", "must be a finite number"},
		{"confidence non-finite", with(map[string]json.RawMessage{"confidence": raw("1e999")}), "confidence", "must be a finite number"},

		{"window end before start", with(map[string]json.RawMessage{"window": raw(`{"start_ts":20,"end_ts":10}`)}), "window", "before start_ts"},
		{"window not an object", with(map[string]json.RawMessage{"window": raw(`[10,20]`)}), "window", "must be an object"},
		{"window missing end", with(map[string]json.RawMessage{"window": raw(`{"start_ts":10}`)}), "window.end_ts", "is required"},
		{"window start string", with(map[string]json.RawMessage{"window": raw(`{"start_ts":"10","end_ts":20}`)}), "window.start_ts", "must be a finite number"},

		{"v zero", with(map[string]json.RawMessage{"v": raw("0")}), "v", "positive integer"},
		{"v negative", with(map[string]json.RawMessage{"v": raw("-1")}), "v", "positive integer"},
		{"v fraction", with(map[string]json.RawMessage{"v": raw("1.5")}), "v", "positive integer"},
		{"v string", with(map[string]json.RawMessage{"v": quoted("1")}), "v", "positive integer"},

		{"id number", with(map[string]json.RawMessage{"id": raw("1")}), "id", "must be a string"},
		{"source object", with(map[string]json.RawMessage{"source": raw(`{}`)}), "source", "must be a string"},
		{"identity_ref oversized", with(map[string]json.RawMessage{"identity_ref": quoted(strings.Repeat("i", attribution.MaxAttackerBytes+1))}), "identity_ref", "more than the 256 allowed"},

		{"EventBridge detail not an object", body(`{"detail-type":"attacker.observation","source":"decnet.behave","detail":"` + strings.ReplaceAll(validEnvelope, `"`, `\"`) + `"}`), "detail", "must be a JSON object"},
		{"EventBridge detail invalid", body(`{"detail-type":"attacker.observation","detail":{"primitive":"motor.input_modality"}}`), "attacker_uuid", "is required"},
		{"SNS Message not a string", body(`{"Type":"Notification","Message":` + validEnvelope + `}`), "Message", "must be a JSON string"},
		{"SNS Message not JSON", body(`{"Type":"Notification","Message":"typed"}`), "Message", "not a JSON object"},
		{"SNS Message with trailing data", body(`{"Type":"Notification","Message":"{} x"}`), "Message", "trailing data"},
		{"SNS Message invalid", body(`{"Type":"Notification","Message":"{\"primitive\":\"motor\"}"}`), "attacker_uuid", "is required"},
		{"SNS inside EventBridge is not unwrapped twice", body(`{"detail-type":"x","detail":{"Type":"Notification","Message":"{}"}}`), "attacker_uuid", "is required"},

		{"bus topic not a string", body(`{"v":1,"topic":7,"payload":` + validEnvelope + `}`), "topic", "must be a string"},
		{"bus topic not an observation", body(`{"v":1,"topic":"attacker.session.ended","payload":` + validEnvelope + `}`), "topic", "not an observation topic"},
		{"bus topic names another primitive", body(`{"v":1,"topic":"attacker.observation.motor.paste_ratio","payload":` + validEnvelope + `}`), "topic", "names primitive"},
		{"bus payload not an object", body(`{"v":1,"topic":"attacker.observation.motor.input_modality","payload":[1]}`), "payload", "must be a JSON object"},
		{"bus payload field invalid", body(`{"v":1,"topic":"attacker.observation.motor.input_modality","payload":` +
			strings.Replace(validEnvelope, `"ts":1714054175.367`, `"ts":"soon"`, 1) + `}`), "payload.ts", "must be a finite number"},
		{"bus payload nested window field", body(`{"v":1,"topic":"attacker.observation.motor.input_modality","payload":` +
			strings.Replace(validEnvelope, `"end_ts":1714054175.367`, `"end_ts":"x"`, 1) + `}`), "payload.window.end_ts", "must be a finite number"},
		{"bus payload missing attacker", body(`{"v":1,"topic":"attacker.observation.motor.input_modality","payload":{"primitive":"motor.input_modality"}}`), "payload.attacker_uuid", "is required"},
		{"bus payload is not unwrapped twice", body(`{"v":1,"topic":"attacker.observation.motor.input_modality","payload":{"topic":"attacker.observation.motor.input_modality","payload":{}}}`), "payload.attacker_uuid", "is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := attribution.DecodeMessage(tc.body(t))
			assertInvalid(t, err, tc.field, tc.reason)
		})
	}
}

func TestDecodeMessageAccepts(t *testing.T) {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	cases := []struct {
		name   string
		fields map[string]json.RawMessage
		check  func(testing.TB, attribution.Observation)
	}{
		{"full envelope", nil, func(tb testing.TB, o attribution.Observation) {
			want := attribution.Observation{
				ID: "obs-1", Primitive: "motor.input_modality", Value: `"typed"`, Source: "behave-shell",
				EvidenceRef: "shard:att-c248#s002", TS: 1714054175.367, AttackerUUID: "att-c248",
				Window: &attribution.Window{StartTS: 1714054145.367, EndTS: 1714054175.367},
			}
			c, v := 0.8, 1
			want.Confidence, want.V = &c, &v
			if !reflect.DeepEqual(o, want) {
				tb.Errorf("got %+v, want %+v", o, want)
			}
		}},
		{"minimal envelope", map[string]json.RawMessage{"id": nil, "confidence": nil, "window": nil, "source": nil, "v": nil}, func(tb testing.TB, o attribution.Observation) {
			if o.Confidence != nil || o.Window != nil || o.V != nil || o.ID != "" || o.Source != "" {
				tb.Errorf("optional fields set: %+v", o)
			}
		}},
		{"null optional fields", map[string]json.RawMessage{"confidence": raw("null"), "window": raw("null"), "v": raw("null"), "id": raw("null")}, func(tb testing.TB, o attribution.Observation) {
			if o.Confidence != nil || o.Window != nil || o.V != nil || o.ID != "" {
				tb.Errorf("optional fields set: %+v", o)
			}
		}},
		{"null value", map[string]json.RawMessage{"value": raw("null")}, func(tb testing.TB, o attribution.Observation) {
			if o.Value != attribution.Null || !o.Value.IsNull() {
				tb.Errorf("value %q, want null", o.Value)
			}
		}},
		{"value canonicalised", map[string]json.RawMessage{"value": raw(` { "b" : [1.0, 2e0], "a" : "x<y" } `)}, func(tb testing.TB, o attribution.Observation) {
			if o.Value != `{"a":"x<y","b":[1,2]}` {
				tb.Errorf("value %s", o.Value)
			}
		}},
		{"value at the size limit", map[string]json.RawMessage{"value": quoted(strings.Repeat("v", attribution.MaxValueBytes-2))}, nil},
		{"confidence bounds", map[string]json.RawMessage{"confidence": raw("0")}, nil},
		{"confidence one", map[string]json.RawMessage{"confidence": raw("1")}, nil},
		{"empty window", map[string]json.RawMessage{"window": raw(`{"start_ts":5,"end_ts":5}`)}, nil},
		{"negative ts", map[string]json.RawMessage{"ts": raw("-1.5")}, func(tb testing.TB, o attribution.Observation) {
			if o.TS != -1.5 {
				tb.Errorf("ts %v", o.TS)
			}
		}},
		{"identity_ref", map[string]json.RawMessage{"identity_ref": quoted("id-1")}, func(tb testing.TB, o attribution.Observation) {
			if o.IdentityRef != "id-1" {
				tb.Errorf("identity_ref %q", o.IdentityRef)
			}
		}},
		{"unknown fields ignored", map[string]json.RawMessage{"extra": raw(`{"x":1}`)}, nil},
		{"two-segment primitive with dash and digits", map[string]json.RawMessage{"primitive": quoted("toolchain-2.tls_v1")}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := mustDecode(t, envelopeWith(t, tc.fields))
			if tc.check != nil {
				tc.check(t, o)
			}
		})
	}
}

// TestDecodeMessageWrapped checks that the envelope reads the same bare,
// as an EventBridge event's detail, as an SNS notification's Message and as
// a DECNET bus envelope's payload.
func TestDecodeMessageWrapped(t *testing.T) {
	bare := mustDecode(t, []byte(validEnvelope))
	eventBridge := `{"version":"0","id":"f4d2661b","detail-type":"attacker.observation","source":"decnet.behave",` +
		`"account":"123456789012","time":"2025-11-24T18:00:16Z","region":"us-east-1","resources":[],"detail":` + validEnvelope + `}`
	sns := `{"Type":"Notification","MessageId":"df798a9c","TopicArn":"arn:aws:sns:us-east-1:123456789012:obs",` +
		`"Message":` + string(quoted(validEnvelope)) + `,"Timestamp":"2025-11-24T19:00:33.648Z","SignatureVersion":"1"}`
	cases := []struct {
		name string
		body string
	}{
		{"EventBridge", eventBridge},
		{"SNS", sns},
		{"DECNET bus", `{"v":1,"id":"9f1c2e","topic":"attacker.observation.motor.input_modality","type":"observation",` +
			`"ts":1714054176.01,"payload":` + validEnvelope + `}`},
		{"bare with white space", "\n\t " + validEnvelope + " \n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := mustDecode(t, []byte(tc.body))
			if !reflect.DeepEqual(got, bare) {
				t.Errorf("got %+v, want %+v", got, bare)
			}
			if got.Fingerprint() != bare.Fingerprint() {
				t.Errorf("fingerprint %s, want %s", got.Fingerprint(), bare.Fingerprint())
			}
		})
	}
}

func TestValidateByKind(t *testing.T) {
	cases := []struct {
		name  string
		kind  attribution.Kind
		value string
		ok    bool
	}{
		{"numeric number", attribution.Numeric, `29850`, true},
		{"numeric negative fraction", attribution.Numeric, `-0.25`, true},
		{"numeric null", attribution.Numeric, `null`, true},
		{"numeric bool", attribution.Numeric, `true`, true},
		{"numeric string", attribution.Numeric, `"29850"`, false},
		{"numeric array", attribution.Numeric, `[1,2]`, false},
		{"numeric object", attribution.Numeric, `{"ms":1}`, false},
		{"categorical string", attribution.Categorical, `"typed"`, true},
		{"categorical array", attribution.Categorical, `[1,2]`, true},
		{"hash object", attribution.Hash, `{"h":"x"}`, true},
		{"hash number", attribution.Hash, `17`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := mustDecode(t, envelopeWith(t, map[string]json.RawMessage{"value": json.RawMessage(tc.value)}))
			err := o.Validate(tc.kind)
			if tc.ok {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			assertInvalid(t, err, "value", "is numeric")
		})
	}
}

// TestFingerprint checks which differences make another observation.
func TestFingerprint(t *testing.T) {
	base := mustDecode(t, []byte(validEnvelope)).Fingerprint()
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	cases := []struct {
		name   string
		fields map[string]json.RawMessage
		same   bool
	}{
		{"same content, other key order and spacing", map[string]json.RawMessage{"value": raw(` "typed" `)}, true},
		{"unknown field", map[string]json.RawMessage{"extra": raw("1")}, true},
		{"other value", map[string]json.RawMessage{"value": quoted("pasted")}, false},
		{"other ts", map[string]json.RawMessage{"ts": raw("1714054175.368")}, false},
		{"other confidence", map[string]json.RawMessage{"confidence": raw("0.9")}, false},
		{"no confidence", map[string]json.RawMessage{"confidence": nil}, false},
		{"other source", map[string]json.RawMessage{"source": quoted("behave-web")}, false},
		{"other window", map[string]json.RawMessage{"window": raw(`{"start_ts":0,"end_ts":1}`)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := mustDecode(t, envelopeWith(t, tc.fields)).Fingerprint()
			if (got == base) != tc.same {
				t.Errorf("fingerprint equal = %v, want %v", got == base, tc.same)
			}
		})
	}
	one := mustDecode(t, envelopeWith(t, map[string]json.RawMessage{"value": raw("1")})).Fingerprint()
	oneFloat := mustDecode(t, envelopeWith(t, map[string]json.RawMessage{"value": raw("1.0")})).Fingerprint()
	oneString := mustDecode(t, envelopeWith(t, map[string]json.RawMessage{"value": quoted("1")})).Fingerprint()
	if one != oneFloat || one == oneString {
		t.Errorf("1 vs 1.0 equal=%v (want true), 1 vs \"1\" equal=%v (want false)", one == oneFloat, one == oneString)
	}
}

func TestCanonicalValue(t *testing.T) {
	cases := []struct {
		name string
		raw  string
		want attribution.Value
		err  bool
	}{
		{"string", `"typed"`, `"typed"`, false},
		{"integer float", `1.0`, `1`, false},
		{"exponent", `25e-1`, `2.5`, false},
		{"integer negative zero", `-0`, `0`, false},
		{"float negative zero", `-0.0`, `-0.0`, false},
		{"float negative zero exponent", `-0e5`, `-0.0`, false},
		{"big integer kept exactly", `9007199254740993`, `9007199254740993`, false},
		{"huge integer kept exactly", `-123456789012345678901234567890`, `-123456789012345678901234567890`, false},
		{"big float read as float64", `9007199254740993.0`, `9007199254740992`, false},
		{"exponent integer", `1e2`, `100`, false},
		{"nested big integer", `[18446744073709551617,{"a":1.50}]`, `[18446744073709551617,{"a":1.5}]`, false},
		{"escapes read", `"\u00e9"`, `"é"`, false},
		{"object keys sorted", `{"b":1,"a":{"d":2,"c":3}}`, `{"a":{"c":3,"d":2},"b":1}`, false},
		{"white space dropped", " [ 1 , \"a\" , null ] ", `[1,"a",null]`, false},
		{"HTML not escaped", `"<a&b>"`, `"<a&b>"`, false},
		{"null", `null`, attribution.Null, false},
		{"bool", `false`, `false`, false},
		{"empty", ``, "", true},
		{"not JSON", `typed`, "", true},
		{"two values", `1 2`, "", true},
		{"trailing bracket", `1]`, "", true},
		{"trailing brace", `{"a":1}}`, "", true},
		{"non-finite", `1e999`, "", true},
		{"nested non-finite", `{"a":[-1e999]}`, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := attribution.CanonicalValue([]byte(tc.raw))
			if tc.err {
				if err == nil {
					t.Fatalf("CanonicalValue(%s) = %s, want an error", tc.raw, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("CanonicalValue(%s) = %s, %v; want %s", tc.raw, got, err, tc.want)
			}
			again, err := attribution.CanonicalValue([]byte(got))
			if err != nil || again != got {
				t.Errorf("not idempotent: %s → %s, %v", got, again, err)
			}
		})
	}
}

func TestValueFloat(t *testing.T) {
	cases := []struct {
		name  string
		value attribution.Value
		want  float64
		err   string
	}{
		{"null", attribution.Null, 0, ""},
		{"unset", "", 0, ""},
		{"true", "true", 1, ""},
		{"false", "false", 0, ""},
		{"number", "-12.5", -12.5, ""},
		{"string", `"3"`, 0, "a string"},
		{"array", `[3]`, 0, "an array"},
		{"object", `{"a":3}`, 0, "an object"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.value.Float()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Float(%s) = %v, %v; want an error naming %s", tc.value, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Float(%s) = %v, %v; want %v", tc.value, got, err, tc.want)
			}
		})
	}
}

func TestValueJSON(t *testing.T) {
	var v struct {
		A attribution.Value `json:"a"`
		B attribution.Value `json:"b"`
		C attribution.Value `json:"c"`
	}
	if err := json.Unmarshal([]byte(`{"a":null,"b":{"y":1.0,"x":[true]},"c":"s"}`), &v); err != nil {
		t.Fatal(err)
	}
	if v.A != attribution.Null || v.B != `{"x":[true],"y":1}` || v.C != `"s"` {
		t.Fatalf("decoded %+v", v)
	}
	v.A = ""
	b, err := json.Marshal(v)
	if err != nil || string(b) != `{"a":null,"b":{"x":[true],"y":1},"c":"s"}` {
		t.Fatalf("encoded %s, %v", b, err)
	}
	for _, f := range []float64{0, -3.25, 1e21, 29850} {
		got := attribution.FloatValue(f)
		if back, err := got.Float(); err != nil || back != f {
			t.Errorf("FloatValue(%v) = %s, reads back as %v, %v", f, got, back, err)
		}
	}
	if got := attribution.FloatValue(nan()); got != attribution.Null {
		t.Errorf("FloatValue(NaN) = %s, want null", got)
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}
