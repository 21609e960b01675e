package eventbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/smithy-go"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/backoff"
)

// Limits of one PutEvents request.
const (
	// MaxEntriesPerCall is the most entries one PutEvents call accepts.
	MaxEntriesPerCall = 10
	// MaxRequestBytes is the most entry bytes (see EntrySize) one entry,
	// and one PutEvents call, may carry: EventBridge requires less than
	// 256 KB.
	MaxRequestBytes = 256*1024 - 1
)

// CodeEntryTooLarge is the failure code of an event whose entry alone is
// larger than MaxRequestBytes. It is never sent.
const CodeEntryTooLarge = "EntryTooLarge"

// Defaults of Config.
const (
	DefaultMaxAttempts = 5
	DefaultBaseDelay   = 100 * time.Millisecond
	DefaultMaxDelay    = 5 * time.Second
)

// timeEntryBytes is what a Time field adds to an entry's size.
const timeEntryBytes = 14

// PutEventsAPI is the part of the EventBridge client the Publisher uses;
// *eventbridge.Client satisfies it.
type PutEventsAPI interface {
	PutEvents(ctx context.Context, params *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

var _ PutEventsAPI = (*eventbridge.Client)(nil)

// Metrics receives publishing counts as they happen. A Publisher shared
// between goroutines calls it concurrently.
type Metrics interface {
	// AddPublishRetries counts entries about to be sent again after a
	// retryable failure.
	AddPublishRetries(n int)
	// AddPermanentFailures counts entries rejected for good (never retried).
	AddPermanentFailures(n int)
}

// Config configures a Publisher. Only BusName is required.
type Config struct {
	// BusName is the name or ARN of the event bus.
	BusName string
	// MaxAttempts bounds the requests made for one entry, first one
	// included. Zero means DefaultMaxAttempts; 1 disables retries.
	MaxAttempts int
	// BaseDelay and MaxDelay shape the backoff: before retry n (from 1) the
	// Publisher sleeps a random duration in [0, min(MaxDelay,
	// BaseDelay*2^(n-1))). Zero means DefaultBaseDelay / DefaultMaxDelay.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// Now, when set, stamps every entry's Time; otherwise EventBridge uses
	// the time it receives the entry.
	Now func() time.Time
	// Sleep waits for d or until ctx is done, returning ctx.Err() then.
	// Nil means a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns a number in [0, 1) for the jitter. Nil means math/rand/v2.
	Rand func() float64
	// Logger receives permanent failures and retries. Nil means slog.Default().
	Logger *slog.Logger
	// Metrics is optional.
	Metrics Metrics
}

// Publisher publishes attribution events to one EventBridge bus. It keeps
// no state between calls: it is safe for concurrent use when its client,
// Config.Sleep, Config.Rand and Config.Metrics are.
type Publisher struct {
	client      PutEventsAPI
	busName     string
	maxAttempts int
	baseDelay   time.Duration
	maxDelay    time.Duration
	now         func() time.Time
	sleep       func(context.Context, time.Duration) error
	rand        func() float64
	logger      *slog.Logger
	metrics     Metrics
}

var _ attribution.Publisher = (*Publisher)(nil)

// New returns a Publisher sending to cfg.BusName through client.
func New(client PutEventsAPI, cfg Config) (*Publisher, error) {
	if client == nil {
		return nil, errors.New("new event publisher: nil client")
	}
	if cfg.BusName == "" {
		return nil, errors.New("new event publisher: empty bus name")
	}
	if cfg.MaxAttempts < 0 || cfg.BaseDelay < 0 || cfg.MaxDelay < 0 {
		return nil, fmt.Errorf("new event publisher: negative retry setting (attempts %d, base delay %s, max delay %s)",
			cfg.MaxAttempts, cfg.BaseDelay, cfg.MaxDelay)
	}
	p := &Publisher{
		client:      client,
		busName:     cfg.BusName,
		maxAttempts: orDefault(cfg.MaxAttempts, DefaultMaxAttempts),
		baseDelay:   orDefault(cfg.BaseDelay, DefaultBaseDelay),
		maxDelay:    orDefault(cfg.MaxDelay, DefaultMaxDelay),
		now:         cfg.Now,
		sleep:       cfg.Sleep,
		rand:        cfg.Rand,
		logger:      cfg.Logger,
		metrics:     cfg.Metrics,
	}
	if p.maxDelay < p.baseDelay {
		return nil, fmt.Errorf("new event publisher: max delay %s below base delay %s", p.maxDelay, p.baseDelay)
	}
	if p.sleep == nil {
		p.sleep = backoff.Sleep
	}
	if p.rand == nil {
		p.rand = rand.Float64
	}
	if p.logger == nil {
		p.logger = slog.Default()
	}
	return p, nil
}

// orDefault returns v, or def when v is the zero value.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// item is one event on its way to the bus.
type item struct {
	index int // position in the Publish call
	event attribution.Event
	entry types.PutEventsRequestEntry
	size  int
	// lastCode and lastMessage are the retryable rejection of the
	// latest attempt.
	lastCode, lastMessage string
}

// failure is a FailedEvent with its position in the Publish call.
type failure struct {
	index int
	attribution.FailedEvent
}

// Publish sends events in order. See attribution.Publisher for the
// contract: nil when all were accepted, an *attribution.PublishError
// listing the rejected ones (in the order given), or an error wrapping the
// cause when the outcome of a call is unknown (then nothing is reported
// per event: any of them may or may not have been accepted, and the caller
// publishes them all again with the same IDs).
func (p *Publisher) Publish(ctx context.Context, events []attribution.Event) error {
	if len(events) == 0 {
		return nil
	}
	var stamp *time.Time
	if p.now != nil {
		stamp = aws.Time(p.now())
	}
	var failed []failure
	items := make([]item, 0, len(events))
	for i, ev := range events {
		entry := p.entry(ev, stamp)
		size := EntrySize(entry)
		if size > MaxRequestBytes {
			failed = append(failed, p.permanent(ctx, i, ev, CodeEntryTooLarge,
				fmt.Sprintf("entry is %d bytes, over the %d-byte PutEvents request limit", size, MaxRequestBytes)))
			continue
		}
		items = append(items, item{index: i, event: ev, entry: entry, size: size})
	}
	for _, call := range split(items) {
		f, err := p.put(ctx, call)
		if err != nil {
			return err
		}
		failed = append(failed, f...)
	}
	if len(failed) == 0 {
		return nil
	}
	slices.SortStableFunc(failed, func(a, b failure) int { return a.index - b.index })
	perr := &attribution.PublishError{Failed: make([]attribution.FailedEvent, len(failed))}
	for i, f := range failed {
		perr.Failed[i] = f.FailedEvent
	}
	return perr
}

func (p *Publisher) entry(ev attribution.Event, stamp *time.Time) types.PutEventsRequestEntry {
	return types.PutEventsRequestEntry{
		Source:       aws.String(attribution.EventSource),
		DetailType:   aws.String(ev.DetailType),
		Detail:       aws.String(string(ev.Detail)),
		EventBusName: aws.String(p.busName),
		Time:         stamp,
	}
}

// EntrySize is the size EventBridge counts for an entry against
// MaxRequestBytes: the UTF-8 bytes of Source, DetailType, Detail and each
// resource, plus 14 bytes when Time is set. EventBusName does not count.
func EntrySize(e types.PutEventsRequestEntry) int {
	n := len(aws.ToString(e.Source)) + len(aws.ToString(e.DetailType)) + len(aws.ToString(e.Detail))
	for _, r := range e.Resources {
		n += len(r)
	}
	if e.Time != nil {
		n += timeEntryBytes
	}
	return n
}

// split groups items, in order, into calls of at most MaxEntriesPerCall
// entries and MaxRequestBytes bytes. Every item fits a call on its own.
func split(items []item) [][]item {
	var calls [][]item
	start, bytes := 0, 0
	for i, it := range items {
		if i > start && (i-start == MaxEntriesPerCall || bytes+it.size > MaxRequestBytes) {
			calls = append(calls, items[start:i])
			start, bytes = i, 0
		}
		bytes += it.size
	}
	if start < len(items) {
		calls = append(calls, items[start:])
	}
	return calls
}

// put sends one call's items, retrying what may be retried, and returns the
// items that were not accepted. An error means the outcome of some items is
// unknown.
func (p *Publisher) put(ctx context.Context, items []item) ([]failure, error) {
	var failed []failure
	pending := items
	for attempt := 1; ; attempt++ {
		retryIn, err := p.attempt(ctx, pending, &failed)
		if err != nil {
			if ctx.Err() != nil || !retryableCallError(err) || attempt >= p.maxAttempts {
				return nil, fmt.Errorf("put events (bus %s, %d entries, attempt %d of %d): %w",
					p.busName, len(pending), attempt, p.maxAttempts, err)
			}
			retryIn = pending
		}
		if len(retryIn) == 0 {
			return failed, nil
		}
		if attempt >= p.maxAttempts {
			for _, it := range retryIn {
				failed = append(failed, p.exhausted(ctx, it, attempt))
			}
			return failed, nil
		}
		delay := p.backoff(attempt)
		attrs := []slog.Attr{
			slog.String("bus", p.busName),
			slog.Int("entries", len(retryIn)),
			slog.Int("attempt", attempt),
			slog.Duration("delay", delay),
		}
		if err != nil {
			attrs = append(attrs, slog.String("error", err.Error()))
		} else {
			attrs = append(attrs, slog.String("code", retryIn[0].lastCode))
		}
		p.logger.LogAttrs(ctx, slog.LevelWarn, "retrying events", attrs...)
		if p.metrics != nil {
			p.metrics.AddPublishRetries(len(retryIn))
		}
		if err := p.sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("put events (bus %s, %d entries): wait before attempt %d: %w",
				p.busName, len(retryIn), attempt+1, err)
		}
		pending = retryIn
	}
}

// attempt makes one PutEvents request for items. It appends permanent
// failures to failed and returns the items to retry. An error is a failed
// call, whose outcome is unknown.
func (p *Publisher) attempt(ctx context.Context, items []item, failed *[]failure) ([]item, error) {
	entries := make([]types.PutEventsRequestEntry, len(items))
	for i, it := range items {
		entries[i] = it.entry
	}
	out, err := p.client.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: entries}, singleSDKAttempt)
	if err != nil {
		return nil, err
	}
	if len(out.Entries) != len(items) {
		return nil, fmt.Errorf("response has %d result entries for %d request entries", len(out.Entries), len(items))
	}
	type rejection struct {
		item
		code, message string
	}
	var retryIn []item
	var permanent []rejection
	for i, res := range out.Entries {
		code := aws.ToString(res.ErrorCode)
		switch {
		case code == "":
		case retryableEntryCode(code):
			it := items[i]
			it.lastCode, it.lastMessage = code, aws.ToString(res.ErrorMessage)
			retryIn = append(retryIn, it)
		default:
			permanent = append(permanent, rejection{items[i], code, aws.ToString(res.ErrorMessage)})
		}
	}
	if rejected := len(retryIn) + len(permanent); int(out.FailedEntryCount) != rejected {
		return nil, fmt.Errorf("response counts %d failed entries but %d entries carry an error code", out.FailedEntryCount, rejected)
	}
	for _, r := range permanent {
		*failed = append(*failed, p.permanent(ctx, r.index, r.event, r.code, r.message))
	}
	return retryIn, nil
}

// singleSDKAttempt limits the SDK's retryer to one attempt per request, so
// the Publisher's own loop is the only one retrying.
func singleSDKAttempt(o *eventbridge.Options) { o.RetryMaxAttempts = 1 }

func (p *Publisher) permanent(ctx context.Context, index int, ev attribution.Event, code, msg string) failure {
	p.logger.LogAttrs(ctx, slog.LevelError, "event rejected permanently",
		slog.String("bus", p.busName),
		slog.String("event_id", ev.ID),
		slog.String("detail_type", ev.DetailType),
		slog.String("code", code),
		slog.String("message", msg))
	if p.metrics != nil {
		p.metrics.AddPermanentFailures(1)
	}
	return failure{index: index, FailedEvent: attribution.FailedEvent{Event: ev, Code: code, Message: msg}}
}

func (p *Publisher) exhausted(ctx context.Context, it item, attempts int) failure {
	p.logger.LogAttrs(ctx, slog.LevelWarn, "event not accepted after retries",
		slog.String("bus", p.busName),
		slog.String("event_id", it.event.ID),
		slog.String("detail_type", it.event.DetailType),
		slog.String("code", it.lastCode),
		slog.String("message", it.lastMessage),
		slog.Int("attempts", attempts))
	return failure{index: it.index, FailedEvent: attribution.FailedEvent{
		Event: it.event, Code: it.lastCode, Message: it.lastMessage, Retryable: true,
	}}
}

// backoff is the full-jitter delay before the retry that follows attempt.
func (p *Publisher) backoff(attempt int) time.Duration {
	ceiling := p.baseDelay
	for i := 1; i < attempt && ceiling < p.maxDelay; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, p.maxDelay)
	return time.Duration(p.rand() * float64(ceiling))
}

// retryableEntryCode reports whether an entry rejected with code may be
// sent again.
func retryableEntryCode(code string) bool {
	return code == "InternalFailure" || code == "ThrottlingException"
}

var sdkRetryables = retry.IsErrorRetryables(retry.DefaultRetryables)

// retryableCallError reports whether a failed PutEvents call may be made
// again: throttling, server faults and connection errors, as the SDK's
// standard retryer judges them, plus any modeled server fault.
func retryableCallError(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if sdkRetryables.IsErrorRetryable(err) == aws.TrueTernary {
		return true
	}
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorFault() == smithy.FaultServer
}
