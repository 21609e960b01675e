package attribution

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"
)

// Bounds on the identifying strings of an observation; they keep keys and
// the series record small.
const (
	MaxPrimitiveBytes   = 128
	MaxEvidenceRefBytes = 256
	MaxAttackerBytes    = 256
	MaxMessageBytes     = 16 * 1024
)

// Window is the span of a session an observation summarises.
type Window struct {
	StartTS float64 `json:"start_ts"`
	EndTS   float64 `json:"end_ts"`
}

// Observation is one BEHAVE envelope about one attacker.
type Observation struct {
	ID           string   `json:"id,omitempty"`
	Primitive    string   `json:"primitive"`
	Value        Value    `json:"value"`
	Confidence   *float64 `json:"confidence,omitempty"`
	Window       *Window  `json:"window,omitempty"`
	Source       string   `json:"source,omitempty"`
	EvidenceRef  string   `json:"evidence_ref"`
	V            *int     `json:"v,omitempty"`
	TS           float64  `json:"ts"`
	IdentityRef  string   `json:"identity_ref,omitempty"`
	AttackerUUID string   `json:"attacker_uuid"`
}

// Point is what the mergers need of an observation: its place in the series
// and its value.
func (o Observation) Point() Point {
	return Point{TS: o.TS, Ref: o.EvidenceRef, Value: o.Value}
}

// Fingerprint identifies the observation's content: two deliveries with one
// fingerprint are the same observation, a different fingerprint under the
// same key is an amendment.
func (o Observation) Fingerprint() string {
	b, _ := json.Marshal(o) // canonical: fixed field order, canonical value
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// envelope is the wire form, with every field optional so that validation
// can name what is missing or mistyped.
type envelope struct {
	ID           json.RawMessage `json:"id"`
	Primitive    json.RawMessage `json:"primitive"`
	Value        json.RawMessage `json:"value"`
	Confidence   json.RawMessage `json:"confidence"`
	Window       json.RawMessage `json:"window"`
	Source       json.RawMessage `json:"source"`
	EvidenceRef  json.RawMessage `json:"evidence_ref"`
	V            json.RawMessage `json:"v"`
	TS           json.RawMessage `json:"ts"`
	IdentityRef  json.RawMessage `json:"identity_ref"`
	AttackerUUID json.RawMessage `json:"attacker_uuid"`
	// Wrappers: EventBridge puts the envelope in detail, SNS in Message,
	// DECNET's bus in payload (with the topic it was published on).
	Topic       json.RawMessage `json:"topic"`
	Payload     json.RawMessage `json:"payload"`
	Detail      json.RawMessage `json:"detail"`
	DetailType  json.RawMessage `json:"detail-type"`
	Message     json.RawMessage `json:"Message"`
	MessageType json.RawMessage `json:"Type"`
}

// Decoded is one decoded message body: an observation, an identity event
// of DECNET's clusterer, or (Ignored set) a bus event of the identity family
// that says nothing about membership.
type Decoded struct {
	Observation Observation
	Identity    *IdentityEvent
	Ignored     string
}

// Decode reads one message body: an observation envelope, one wrapped as an
// EventBridge event's detail, an SNS notification's Message or a DECNET bus
// envelope's payload, or a DECNET bus envelope of an identity event. It
// checks shapes and bounds; kind-specific checks (a numeric primitive's
// value) are Observation.Validate's.
func Decode(body []byte) (Decoded, error) {
	return decodeMessage(body, "body", 0)
}

// DecodeMessage is Decode for a body that must be an observation.
func DecodeMessage(body []byte) (Observation, error) {
	d, err := Decode(body)
	if err == nil && (d.Identity != nil || d.Ignored != "") {
		err = Invalidf("topic", "an identity event, not an observation")
	}
	return d.Observation, err
}

// decodeMessage decodes body, which field names in errors: the message
// body itself, or the wrapper field it came from.
func decodeMessage(body []byte, field string, depth int) (Decoded, error) {
	if len(body) > MaxMessageBytes {
		return Decoded{}, Invalidf(field, "message is %d bytes, more than the %d allowed", len(body), MaxMessageBytes)
	}
	var env envelope
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&env); err != nil {
		return Decoded{}, Invalidf(field, "not a JSON object: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Decoded{}, Invalidf(field, "trailing data after the JSON object")
	}
	if depth == 0 && env.Primitive == nil && env.AttackerUUID == nil {
		switch {
		case env.Topic != nil && env.Payload != nil:
			var topic string
			if err := json.Unmarshal(env.Topic, &topic); err != nil {
				return Decoded{}, Invalidf("topic", "must be a string, got %s", truncate(env.Topic))
			}
			if strings.HasPrefix(topic, IdentityTopicPrefix) {
				ev, err := decodeBusIdentity(topic, env)
				if ev == nil && err == nil {
					return Decoded{Ignored: topic}, nil
				}
				return Decoded{Identity: ev}, err
			}
			obs, err := decodeBusObservation(topic, env.Payload)
			return Decoded{Observation: obs}, err
		case env.Detail != nil && env.DetailType != nil:
			if len(env.Detail) == 0 || env.Detail[0] != '{' {
				return Decoded{}, Invalidf("detail", "EventBridge detail must be a JSON object")
			}
			return decodeMessage(env.Detail, "detail", depth+1)
		case env.Message != nil && env.MessageType != nil:
			var inner string
			if err := json.Unmarshal(env.Message, &inner); err != nil {
				return Decoded{}, Invalidf("Message", "SNS Message must be a JSON string: %v", err)
			}
			return decodeMessage([]byte(inner), "Message", depth+1)
		}
	}
	obs, err := env.observation()
	return Decoded{Observation: obs}, err
}

// ObservationTopicPrefix starts the DECNET bus topic of every observation:
// attacker.observation.<primitive>, the primitive keeping its dots.
const ObservationTopicPrefix = "attacker.observation."

// decodeBusObservation reads the payload of a DECNET bus envelope published
// on an observation topic. Errors name the fields inside it (payload.ts).
func decodeBusObservation(topic string, payload json.RawMessage) (Observation, error) {
	primitive, ok := strings.CutPrefix(topic, ObservationTopicPrefix)
	if !ok {
		return Observation{}, Invalidf("topic", "%q is not an observation topic (%s<primitive>)", topic, ObservationTopicPrefix)
	}
	if len(payload) == 0 || payload[0] != '{' {
		return Observation{}, Invalidf("payload", "bus payload must be a JSON object")
	}
	d, err := decodeMessage(payload, "payload", 1)
	obs := d.Observation
	if err != nil {
		return obs, prefixField("payload", err)
	}
	if obs.Primitive != primitive {
		return obs, Invalidf("topic", "%q names primitive %q but payload.primitive is %q", topic, primitive, obs.Primitive)
	}
	return obs, nil
}

// prefixField qualifies the field of an invalid-input error with the
// wrapper it was found in.
func prefixField(prefix string, err error) error {
	var e *Error
	if !errors.As(err, &e) || e.Code != EINVALID {
		return err
	}
	q := *e
	switch {
	case q.Field == "":
		q.Field = prefix
	case q.Field != prefix:
		q.Field = prefix + "." + q.Field
	}
	return &q
}

func (env envelope) observation() (Observation, error) {
	var o Observation
	var err error
	if o.AttackerUUID, err = requiredString("attacker_uuid", env.AttackerUUID, MaxAttackerBytes); err != nil {
		return o, err
	}
	if o.Primitive, err = requiredString("primitive", env.Primitive, MaxPrimitiveBytes); err != nil {
		return o, err
	}
	if err := ValidatePrimitive(o.Primitive); err != nil {
		return o, Invalidf("primitive", "%v", err)
	}
	if o.EvidenceRef, err = requiredString("evidence_ref", env.EvidenceRef, MaxEvidenceRefBytes); err != nil {
		return o, err
	}
	if env.TS == nil {
		return o, Invalidf("ts", "is required")
	}
	if o.TS, err = finiteNumber("ts", env.TS); err != nil {
		return o, err
	}
	if env.Value == nil {
		return o, Invalidf("value", "is required (null is allowed)")
	}
	if o.Value, err = CanonicalValue(env.Value); err != nil {
		return o, Invalidf("value", "%v", err)
	}
	if len(o.Value) > MaxValueBytes {
		return o, Invalidf("value", "is %d bytes of JSON, more than the %d allowed", len(o.Value), MaxValueBytes)
	}
	if !isNull(env.Confidence) {
		c, err := finiteNumber("confidence", env.Confidence)
		if err != nil {
			return o, err
		}
		if c < 0 || c > 1 {
			return o, Invalidf("confidence", "must be between 0 and 1, got %v", c)
		}
		o.Confidence = &c
	}
	if !isNull(env.Window) {
		var w struct {
			StartTS json.RawMessage `json:"start_ts"`
			EndTS   json.RawMessage `json:"end_ts"`
		}
		if err := json.Unmarshal(env.Window, &w); err != nil {
			return o, Invalidf("window", "must be an object with start_ts and end_ts")
		}
		start, err := finiteNumber("window.start_ts", w.StartTS)
		if err != nil {
			return o, err
		}
		end, err := finiteNumber("window.end_ts", w.EndTS)
		if err != nil {
			return o, err
		}
		if end < start {
			return o, Invalidf("window", "end_ts %v is before start_ts %v", end, start)
		}
		o.Window = &Window{StartTS: start, EndTS: end}
	}
	if o.ID, err = optionalString("id", env.ID, MaxEvidenceRefBytes); err != nil {
		return o, err
	}
	if o.Source, err = optionalString("source", env.Source, MaxEvidenceRefBytes); err != nil {
		return o, err
	}
	if o.IdentityRef, err = optionalString("identity_ref", env.IdentityRef, MaxAttackerBytes); err != nil {
		return o, err
	}
	if !isNull(env.V) {
		var v int
		if err := json.Unmarshal(env.V, &v); err != nil || v < 1 {
			return o, Invalidf("v", "must be a positive integer envelope version, got %s", env.V)
		}
		o.V = &v
	}
	return o, nil
}

// Validate checks what depends on the primitive's kind: a numeric
// primitive's value must be a number, a bool or null.
func (o Observation) Validate(kind Kind) error {
	if kind == Numeric {
		if _, err := o.Value.Float(); err != nil {
			return Invalidf("value", "%s is numeric: %v", o.Primitive, err)
		}
	}
	return nil
}

// ValidatePrimitive checks a primitive name: dotted segments of letters,
// digits, '_' or '-', at least two segments.
func ValidatePrimitive(p string) error {
	if p == "" {
		return fmt.Errorf("is empty")
	}
	if len(p) > MaxPrimitiveBytes {
		return fmt.Errorf("is %d bytes, more than the %d allowed", len(p), MaxPrimitiveBytes)
	}
	segments := strings.Split(p, ".")
	if len(segments) < 2 {
		return fmt.Errorf("%q is not a dotted name like motor.input_modality", p)
	}
	for _, s := range segments {
		if s == "" {
			return fmt.Errorf("%q has an empty segment", p)
		}
		for _, r := range s {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				return fmt.Errorf("%q has the character %q; use letters, digits, '_' or '-' between dots", p, r)
			}
		}
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	return raw == nil || string(raw) == "null"
}

func requiredString(field string, raw json.RawMessage, max int) (string, error) {
	if isNull(raw) {
		return "", Invalidf(field, "is required")
	}
	s, err := optionalString(field, raw, max)
	if err == nil && strings.TrimSpace(s) == "" {
		return "", Invalidf(field, "must not be empty")
	}
	return s, err
}

func optionalString(field string, raw json.RawMessage, max int) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", Invalidf(field, "must be a string, got %s", truncate(raw))
	}
	if len(s) > max {
		return "", Invalidf(field, "is %d bytes, more than the %d allowed", len(s), max)
	}
	if !utf8.ValidString(s) {
		return "", Invalidf(field, "is not valid UTF-8")
	}
	return s, nil
}

func finiteNumber(field string, raw json.RawMessage) (float64, error) {
	if isNull(raw) {
		return 0, Invalidf(field, "is required")
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return 0, Invalidf(field, "must be a finite number, got %s", truncate(raw))
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, Invalidf(field, "must be a finite number")
	}
	return f, nil
}

func truncate(raw json.RawMessage) string {
	if len(raw) > 40 {
		return string(raw[:40]) + "…"
	}
	return string(raw)
}
