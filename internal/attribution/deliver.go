package attribution

import (
	"context"
	"errors"
)

// deliver publishes events, each owned by the series or identity record
// whose outbox holds it, and returns per owner the position up to which
// the bus took its outbox events (the prefix before the first it did not
// take), the owners with events still to publish, and the bus's error.
// Nothing is acknowledged here: a processor writes the position with the
// series' next commit, a membership change or a rebuild with Store.Ack.
// An event the bus rejects for good is logged and dropped.
func (p *Processor) deliver(ctx context.Context, events []Event, owner map[string]SeriesKey) (acked map[SeriesKey]int64, blocked map[SeriesKey]bool, err error) {
	acked, blocked = make(map[SeriesKey]int64), make(map[SeriesKey]bool)
	if len(events) == 0 {
		return acked, blocked, nil
	}
	unsent, err := p.publishEvents(ctx, events)
	for _, e := range events {
		k := owner[e.ID]
		switch {
		case blocked[k]:
		case unsent[e.ID]:
			blocked[k] = true
		case e.Position > 0:
			acked[k] = e.Position
		}
	}
	return acked, blocked, err
}

// publishEvents sends events to the bus and returns the IDs of those to
// publish again, with the bus's error.
func (p *Processor) publishEvents(ctx context.Context, events []Event) (map[string]bool, error) {
	err := p.Publisher.Publish(ctx, events)
	unsent := make(map[string]bool)
	var perr *PublishError
	switch {
	case err == nil:
	case errors.As(err, &perr):
		for _, f := range perr.Failed {
			p.count(MetricPublishFailures, 1)
			if f.Retryable {
				unsent[f.Event.ID] = true
				continue
			}
			p.logger().ErrorContext(ctx, "event rejected permanently by the bus; dropping it",
				"event_id", f.Event.ID, "detail_type", f.Event.DetailType, "code", f.Code, "reason", f.Message)
		}
	default:
		p.count(MetricPublishFailures, len(events))
		for _, e := range events {
			unsent[e.ID] = true
		}
	}
	return unsent, err
}
