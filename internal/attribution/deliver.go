package attribution

import (
	"context"
	"errors"
	"log/slog"
)

// Courier publishes outbox events, each owned by the series or identity
// record whose outbox holds it: the function's one publish path, which a
// rebuild shares. An event the bus rejects for good is logged and dropped.
type Courier struct {
	Publisher Publisher
	Metrics   Metrics      // nil: nothing counted
	Logger    *slog.Logger // nil: slog's default
}

// Delivery is what the bus took of one publish. Nothing is acknowledged by
// Deliver: a processor writes the position with the series' next commit, a
// membership change or a rebuild with Store.Ack.
type Delivery struct {
	// Acked is, per owner, the position up to which the bus took its
	// outbox events: the prefix before the first it did not take.
	Acked map[SeriesKey]int64
	// Blocked are the owners with events still to publish.
	Blocked map[SeriesKey]bool
	// Taken counts the events the bus took.
	Taken int
}

// Deliver publishes events and reports what the bus took, with its error.
func (c Courier) Deliver(ctx context.Context, events []Event, owner map[string]SeriesKey) (Delivery, error) {
	d := Delivery{Acked: make(map[SeriesKey]int64), Blocked: make(map[SeriesKey]bool)}
	if len(events) == 0 {
		return d, nil
	}
	unsent, rejected, err := c.publish(ctx, events)
	for _, e := range events {
		k := owner[e.ID]
		switch {
		case d.Blocked[k]:
		case unsent[e.ID]:
			d.Blocked[k] = true
		case e.Position > 0:
			d.Acked[k] = e.Position
		}
	}
	d.Taken = len(events) - len(unsent) - rejected
	return d, err
}

func (p *Processor) courier() Courier {
	return Courier{Publisher: p.Publisher, Metrics: p.Metrics, Logger: p.logger()}
}

// publish sends events to the bus and returns the IDs of those to publish
// again and how many it rejected for good, with the bus's error.
func (c Courier) publish(ctx context.Context, events []Event) (unsent map[string]bool, rejected int, err error) {
	err = c.Publisher.Publish(ctx, events)
	unsent = make(map[string]bool)
	var perr *PublishError
	switch {
	case err == nil:
	case errors.As(err, &perr):
		for _, f := range perr.Failed {
			c.count(MetricPublishFailures, 1)
			if f.Retryable {
				unsent[f.Event.ID] = true
				continue
			}
			rejected++
			c.logger().ErrorContext(ctx, "event rejected permanently by the bus; dropping it",
				"event_id", f.Event.ID, "detail_type", f.Event.DetailType, "code", f.Code, "reason", f.Message)
		}
	default:
		c.count(MetricPublishFailures, len(events))
		for _, e := range events {
			unsent[e.ID] = true
		}
	}
	return unsent, rejected, err
}

func (c Courier) count(name string, n int) {
	if c.Metrics != nil && n > 0 {
		c.Metrics.Add(name, n)
	}
}

func (c Courier) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}
