package attribution

import (
	"context"
	"fmt"
	"strings"
)

// Publisher delivers events to the event bus.
type Publisher interface {
	// Publish delivers events in order. It returns nil only when every event
	// was accepted. Otherwise it returns a *PublishError listing the events
	// that were not accepted (the others were), or another error when the
	// outcome of the whole call is unknown; either way the events are still
	// stored (with their observations, or in an outbox) and the caller
	// publishes them again later with the same IDs.
	Publish(ctx context.Context, events []Event) error
}

// FailedEvent is one event the bus did not accept.
type FailedEvent struct {
	Event     Event
	Code      string
	Message   string
	Retryable bool
}

// PublishError reports the events a Publish call could not deliver.
type PublishError struct {
	Failed []FailedEvent
}

func (e *PublishError) Error() string {
	codes := make([]string, 0, len(e.Failed))
	for _, f := range e.Failed {
		codes = append(codes, f.Event.ID+"="+f.Code)
	}
	return fmt.Sprintf("publish: %d event(s) not accepted: %s", len(e.Failed), strings.Join(codes, ", "))
}
