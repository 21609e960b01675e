package attribution

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// EventSource is the EventBridge Source of every event this service emits.
const EventSource = "decnet.attribution"

// Detail types of the events this service emits.
const (
	EventStateChanged        = "attribution.profile.state_changed"
	EventMultiActorSuspected = "attribution.profile.multi_actor_suspected"
)

// Event is an event that must reach the bus at least once, always with the
// same ID: stored with the observation that caused it, or in a series'
// outbox when no observation did.
type Event struct {
	// ID is deterministic (see EventID), so a redelivery carries the same ID.
	ID string `json:"event_id"`
	// DetailType is EventStateChanged or EventMultiActorSuspected.
	DetailType string `json:"detail_type"`
	// Position orders the events of one series' outbox (0 elsewhere);
	// acknowledged positions are never published again.
	Position int64 `json:"position,omitempty"`
	// Detail is the JSON payload (it includes event_id itself).
	Detail json.RawMessage `json:"detail"`
}

// StateChanged is the detail of attribution.profile.state_changed.
type StateChanged struct {
	EventID          string  `json:"event_id"`
	Sequence         int64   `json:"sequence"`
	IdentityUUID     string  `json:"identity_uuid"`
	AttackerUUID     string  `json:"attacker_uuid"`
	Primitive        string  `json:"primitive"`
	OldState         *string `json:"old_state"`
	NewState         string  `json:"new_state"`
	CurrentValue     Value   `json:"current_value"`
	Confidence       float64 `json:"confidence"`
	ObservationCount int     `json:"observation_count"`
	TS               float64 `json:"ts"`
}

// MultiActorSuspected is the detail of attribution.profile.multi_actor_suspected.
type MultiActorSuspected struct {
	EventID         string   `json:"event_id"`
	Sequence        int64    `json:"sequence"`
	IdentityUUID    string   `json:"identity_uuid"`
	AttackerUUID    string   `json:"attacker_uuid"`
	Primitives      []string `json:"primitives"`
	EvidenceSummary string   `json:"evidence_summary"`
	Confidence      float64  `json:"confidence"`
	TS              float64  `json:"ts"`
}

// EventID derives the ID of the sequence-th event of a kind about a subject.
// Deterministic, so every delivery of one event carries one ID.
func EventID(detailType, subject string, sequence int64) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%d", detailType, subject, sequence)))
	return hex.EncodeToString(sum[:16])
}

// Event encodes the state change for the bus.
func (ev *StateChanged) Event() (Event, error) {
	return newEvent(EventStateChanged, ev.EventID, ev)
}

// Event encodes the suspicion for the bus.
func (ev *MultiActorSuspected) Event() (Event, error) {
	return newEvent(EventMultiActorSuspected, ev.EventID, ev)
}

func newEvent(detailType, id string, detail any) (Event, error) {
	b, err := json.Marshal(detail)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s %s: %w", detailType, id, err)
	}
	return Event{ID: id, DetailType: detailType, Detail: b}, nil
}
