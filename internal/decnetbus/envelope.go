package decnetbus

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"
)

// EnvelopeVersion is the v of the envelopes this package writes.
const EnvelopeVersion = 1

// Envelope is the body of PUB and EVT frames.
type Envelope struct {
	V       int             `json:"v"`
	ID      string          `json:"id"`
	Topic   string          `json:"topic"`
	Type    string          `json:"type"`
	TS      float64         `json:"ts"`
	Payload json.RawMessage `json:"payload"`
}

// NewEnvelope returns an envelope with a fresh random id and the current
// time.
func NewEnvelope(topic, typ string, payload json.RawMessage) Envelope {
	if len(payload) == 0 {
		payload = json.RawMessage("{}")
	}
	return Envelope{
		V: EnvelopeVersion, ID: NewID(), Topic: topic, Type: typ,
		TS: float64(time.Now().UnixMicro()) / 1e6, Payload: payload,
	}
}

// NewID returns 32 random hex digits, as DECNET's event ids.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Event is an EVT frame as a subscriber reads it: the topic of its header
// and its body, unchanged.
type Event struct {
	Topic string
	Body  []byte
}
