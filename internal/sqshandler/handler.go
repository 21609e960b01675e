// Package sqshandler is the Lambda's SQS adapter: it turns an SQS event
// into processor messages and the processor's verdicts into a partial batch
// response, sends invalid messages to the dead-letter queue with their
// reason, logs every rejection and failure, and flushes the metrics.
package sqshandler

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/deadletter"
)

// DeadLetters receives messages that can never succeed.
type DeadLetters interface {
	// Send returns the message IDs of the letters it could not send.
	Send(ctx context.Context, letters []deadletter.Letter) (unsent []string, err error)
}

// Flusher writes the metrics counted during an invocation.
type Flusher interface {
	Flush() error
}

// Handler handles SQS events.
type Handler struct {
	Processor *attribution.Processor
	// DeadLetters, when set, takes invalid messages at once; otherwise they
	// fail until the queue's redrive policy moves them.
	DeadLetters DeadLetters
	Logger      *slog.Logger
	Metrics     Flusher
	// Headroom is how long before the invocation's deadline processing
	// stops (0: DefaultHeadroom, at most a fifth of the time left): the
	// partial batch response must reach Lambda before the timeout, or the
	// whole batch is delivered again.
	Headroom time.Duration
}

// DefaultHeadroom is Handler.Headroom's default.
const DefaultHeadroom = 2 * time.Second

// Handle processes a batch and reports the messages to retry.
func (h *Handler) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	msgs := make([]attribution.Message, len(ev.Records))
	for i, r := range ev.Records {
		msgs[i] = attribution.Message{ID: r.MessageId, Body: []byte(r.Body)}
	}
	// Work stops at the cutoff: calls under way are cancelled, nothing new
	// starts, and what did not finish fails below; the dead-letter send and
	// the response get the rest of the headroom.
	workCtx, sendCtx := ctx, ctx
	if deadline, ok := ctx.Deadline(); ok {
		headroom := h.Headroom
		if headroom <= 0 {
			headroom = min(DefaultHeadroom, time.Until(deadline)/5)
		}
		var cancelWork, cancelSend context.CancelFunc
		workCtx, cancelWork = context.WithDeadline(ctx, deadline.Add(-headroom))
		defer cancelWork()
		sendCtx, cancelSend = context.WithDeadline(ctx, deadline.Add(-headroom/4))
		defer cancelSend()
	}
	errs := h.Processor.Process(workCtx, msgs)
	var resp events.SQSEventResponse
	retry := func(id string) {
		resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: id})
	}
	var letters []deadletter.Letter
	for i, err := range errs {
		if err == nil {
			continue
		}
		r := ev.Records[i]
		receives, _ := strconv.Atoi(r.Attributes["ApproximateReceiveCount"])
		if attribution.ErrorCode(err) == attribution.EINVALID {
			h.Logger.WarnContext(ctx, "rejected invalid message",
				"message_id", r.MessageId, "field", attribution.ErrorField(err), "reason", err.Error(), "receive_count", receives)
			letters = append(letters, deadletter.Letter{MessageID: r.MessageId, Body: r.Body, Field: attribution.ErrorField(err), Reason: err.Error()})
			continue
		}
		if workCtx.Err() != nil && ctx.Err() == nil {
			h.Logger.WarnContext(ctx, "message not finished before the function's deadline; the queue will deliver it again",
				"message_id", r.MessageId, "error", err.Error(), "receive_count", receives)
			retry(r.MessageId)
			continue
		}
		h.Logger.ErrorContext(ctx, "message failed; the queue will deliver it again",
			"message_id", r.MessageId, "error", err.Error(), "receive_count", receives)
		retry(r.MessageId)
	}
	if len(letters) > 0 {
		if h.DeadLetters == nil {
			for _, l := range letters {
				retry(l.MessageID)
			}
		} else if unsent, err := h.DeadLetters.Send(sendCtx, letters); err != nil {
			h.Logger.ErrorContext(ctx, "could not send invalid messages to the dead-letter queue; the redrive policy will move them",
				"error", err.Error(), "message_ids", unsent)
			for _, id := range unsent {
				retry(id)
			}
		}
	}
	h.Logger.InfoContext(ctx, "batch processed",
		"messages", len(ev.Records), "retry", len(resp.BatchItemFailures), "rejected", len(letters))
	if h.Metrics != nil {
		if err := h.Metrics.Flush(); err != nil {
			h.Logger.WarnContext(ctx, "flush metrics", "error", err.Error())
		}
	}
	return resp, nil
}
