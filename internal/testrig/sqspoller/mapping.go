package sqspoller

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"decnet-attribution/internal/backoff"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// SQSAPI is the part of the SQS client a Mapping uses.
//
// Each method follows the SDK's contract: a non-nil error means the call
// failed; DeleteMessageBatch reports per-entry failures in its output.
type SQSAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

var _ SQSAPI = (*sqs.Client)(nil)

// ErrRunning is returned by Run and RunUntilDrained while the mapping is
// already running.
var ErrRunning = errors.New("event source mapping already running")

// errInvalidItemIdentifier fails a batch whose response names a message that
// is not in it.
var errInvalidItemIdentifier = errors.New("batch item failure names no message of the batch")

// Mapping polls a queue and invokes a function with batches of its messages.
// Its methods are safe for concurrent use.
type Mapping struct {
	client   SQSAPI
	invoker  Invoker
	cfg      Config
	stats    counters
	inFlight atomic.Int64 // messages received and not yet settled
	running  atomic.Bool
}

// New returns a mapping from cfg's queue to inv. It validates cfg (errors
// wrap ErrInvalidConfig) but does not call SQS.
func New(client SQSAPI, inv Invoker, cfg Config) (*Mapping, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil SQS client", ErrInvalidConfig)
	}
	if inv == nil {
		return nil, fmt.Errorf("%w: nil invoker", ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Mapping{client: client, invoker: inv, cfg: cfg}, nil
}

// Stats returns a snapshot of the mapping's counters.
func (m *Mapping) Stats() Stats { return m.stats.snapshot() }

// queueInfo is what a mapping learns about its queue when it starts.
type queueInfo struct {
	src             source
	maxReceiveCount int // 0 without a redrive policy
}

func (m *Mapping) describeQueue(ctx context.Context) (queueInfo, error) {
	out, err := m.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(m.cfg.QueueURL),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn, types.QueueAttributeNameRedrivePolicy},
	})
	if err != nil {
		return queueInfo{}, fmt.Errorf("describe queue %s: %w", m.cfg.QueueURL, err)
	}
	arn := out.Attributes[string(types.QueueAttributeNameQueueArn)]
	q := queueInfo{src: source{ARN: arn, Region: regionFromARN(arn)}}
	if s := out.Attributes[string(types.QueueAttributeNameRedrivePolicy)]; s != "" {
		p, err := parseRedrivePolicy(s)
		if err != nil {
			return queueInfo{}, fmt.Errorf("describe queue %s: %w", m.cfg.QueueURL, err)
		}
		q.maxReceiveCount = p.MaxReceiveCount
	}
	return q, nil
}

// Run polls until ctx is cancelled, then lets batches already received finish
// (invocation and deletion are not cancelled) and returns nil. It returns an
// error without polling if the queue cannot be described, and ErrRunning if
// the mapping is already running. Receive and delete errors do not stop it:
// they are counted, logged and retried with backoff.
func (m *Mapping) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer m.running.Store(false)
	q, err := m.describeQueue(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for i := range m.cfg.Pollers {
		wg.Go(func() { m.poll(ctx, q, i) })
	}
	wg.Wait()
	return nil
}

// RunUntilDrained runs the mapping until the queue has had no visible,
// in-flight or delayed message, and the mapping no unsettled batch, for idle
// on end. It then stops the pollers and returns nil. If ctx ends first it
// stops and returns ctx's error; if Run fails to start it returns that error.
//
// Messages waiting to be moved to the dead-letter queue are still in the
// source queue, so they keep the mapping running until it has moved them.
func (m *Mapping) RunUntilDrained(ctx context.Context, idle time.Duration) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()

	tick := min(max(idle/10, 10*time.Millisecond), 250*time.Millisecond)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	var emptySince time.Time
	for {
		select {
		case err := <-done:
			if err != nil {
				return err
			}
			return ctx.Err()
		case <-ticker.C:
		}
		empty, err := m.queueEmpty(ctx)
		if err != nil {
			m.cfg.Logger.Warn("drain check failed", "queue", m.cfg.QueueURL, "err", err)
		}
		if err != nil || !empty || m.inFlight.Load() != 0 {
			emptySince = time.Time{}
			continue
		}
		if emptySince.IsZero() {
			emptySince = time.Now()
		}
		if time.Since(emptySince) >= idle {
			cancel()
			return <-done
		}
	}
}

func (m *Mapping) queueEmpty(ctx context.Context) (bool, error) {
	names := []types.QueueAttributeName{
		types.QueueAttributeNameApproximateNumberOfMessages,
		types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
	}
	out, err := m.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(m.cfg.QueueURL),
		AttributeNames: names,
	})
	if err != nil {
		return false, fmt.Errorf("queue attributes %s: %w", m.cfg.QueueURL, err)
	}
	for _, name := range names {
		n, err := strconv.Atoi(out.Attributes[string(name)])
		if err != nil {
			return false, fmt.Errorf("queue attributes %s: %s: %q is not a count", m.cfg.QueueURL, name, out.Attributes[string(name)])
		}
		if n != 0 {
			return false, nil
		}
	}
	return true, nil
}

// poll is one poller's loop.
func (m *Mapping) poll(ctx context.Context, q queueInfo, id int) {
	log := m.cfg.Logger.With("queue", m.cfg.QueueURL, "poller", id)
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	failures := 0 // receives failed in a row
	for ctx.Err() == nil {
		msgs, err := m.gather(ctx)
		if len(msgs) > 0 {
			// A received batch is settled even if ctx ends meanwhile, so
			// that stopping leaves no message half processed.
			m.process(context.WithoutCancel(ctx), q, msgs)
		}
		if err == nil {
			failures = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		m.stats.receiveErrors.Add(1)
		failures++
		wait := backoff.Jitter(failures, minBackoff, maxBackoff)
		log.Warn("receive failed", "err", err, "retry_in", wait)
		if backoff.Sleep(ctx, wait) != nil {
			return
		}
	}
}

// gather receives up to BatchSize messages: one ReceiveMessage call, or, with
// a batching window, further calls until the batch is full, the window that
// opened with the first message closes, or the payload limit is reached. A
// message received twice within the window appears once, with its latest
// receipt. On error it returns the messages already received with the error.
func (m *Mapping) gather(ctx context.Context) ([]types.Message, error) {
	var (
		batch    []types.Message
		seen     = map[string]int{} // message ID -> index in batch
		size     int
		deadline time.Time
	)
	for len(batch) < m.cfg.BatchSize && size < maxPayloadBytes {
		wait := m.cfg.WaitTimeSeconds
		if len(batch) > 0 {
			remaining := time.Until(deadline)
			if remaining <= 0 {
				break
			}
			wait = min(wait, int(remaining/time.Second))
		}
		in := &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(m.cfg.QueueURL),
			MaxNumberOfMessages:         int32(min(maxReceivePerCall, m.cfg.BatchSize-len(batch))),
			WaitTimeSeconds:             int32(wait),
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
			MessageAttributeNames:       []string{"All"},
		}
		if m.cfg.VisibilityTimeout > 0 {
			in.VisibilityTimeout = int32(m.cfg.VisibilityTimeout / time.Second)
		}
		out, err := m.client.ReceiveMessage(ctx, in)
		if err != nil {
			return batch, fmt.Errorf("receive from %s: %w", m.cfg.QueueURL, err)
		}
		if len(out.Messages) > 0 {
			if len(batch) == 0 {
				if m.cfg.MaximumBatchingWindow == 0 {
					m.inFlight.Add(int64(len(out.Messages)))
					return out.Messages, nil
				}
				deadline = time.Now().Add(m.cfg.MaximumBatchingWindow)
			}
			for _, msg := range out.Messages {
				id := aws.ToString(msg.MessageId)
				if i, dup := seen[id]; dup {
					// The message's visibility timeout expired while the
					// batch was being gathered: keep the newest receipt,
					// the one SQS requires for the delete.
					batch[i] = msg
					continue
				}
				seen[id] = len(batch)
				batch = append(batch, msg)
				size += approxSize(msg)
				m.inFlight.Add(1)
			}
			continue
		}
		if wait == 0 && len(batch) > 0 {
			// A short poll found nothing; pause rather than spin until the
			// window closes.
			if backoff.Sleep(ctx, min(time.Until(deadline), 100*time.Millisecond)) != nil {
				return batch, ctx.Err()
			}
		}
	}
	return batch, nil
}

// process invokes the function with msgs and settles them.
func (m *Mapping) process(ctx context.Context, q queueInfo, msgs []types.Message) {
	defer m.inFlight.Add(-int64(len(msgs)))
	log := m.cfg.Logger.With("queue", m.cfg.QueueURL)

	m.stats.batches.Add(1)
	m.stats.delivered.Add(int64(len(msgs)))
	for _, msg := range msgs {
		if receiveCount(msg) > 1 {
			m.stats.redelivered.Add(1)
		}
	}

	resp, err := m.invoke(ctx, newEvent(q.src, msgs))
	var failed map[string]bool
	if err == nil {
		failed, err = failedIDs(resp, msgs)
	}
	if err != nil {
		m.stats.batchErrors.Add(1)
		log.Warn("batch failed", "messages", len(msgs), "err", err)
		m.noteExhausted(q, msgs)
		return
	}

	m.stats.failed.Add(int64(len(failed)))
	keep := make([]types.Message, 0, len(failed))
	settle := make([]types.Message, 0, len(msgs)-len(failed))
	for _, msg := range msgs {
		if failed[aws.ToString(msg.MessageId)] {
			keep = append(keep, msg)
		} else {
			settle = append(settle, msg)
		}
	}
	m.noteExhausted(q, keep)
	m.delete(ctx, settle)
}

// invoke calls the invoker, bounding it by InvokeTimeout and turning a panic
// into an error.
func (m *Mapping) invoke(ctx context.Context, ev events.SQSEvent) (resp events.SQSEventResponse, err error) {
	if m.cfg.InvokeTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.cfg.InvokeTimeout)
		defer cancel()
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("invoke: function panicked: %v", r)
		}
	}()
	return m.invoker.Invoke(ctx, ev)
}

// failedIDs returns the message IDs resp reports as failed, or an error if
// it names an empty or unknown itemIdentifier (which fails the whole batch).
func failedIDs(resp events.SQSEventResponse, msgs []types.Message) (map[string]bool, error) {
	if len(resp.BatchItemFailures) == 0 {
		return nil, nil
	}
	inBatch := make(map[string]bool, len(msgs))
	for _, msg := range msgs {
		inBatch[aws.ToString(msg.MessageId)] = true
	}
	failed := make(map[string]bool, len(resp.BatchItemFailures))
	for _, f := range resp.BatchItemFailures {
		if !inBatch[f.ItemIdentifier] {
			return nil, fmt.Errorf("%w: itemIdentifier %q", errInvalidItemIdentifier, f.ItemIdentifier)
		}
		failed[f.ItemIdentifier] = true
	}
	return failed, nil
}

// noteExhausted counts failed messages that used their last receive.
func (m *Mapping) noteExhausted(q queueInfo, failed []types.Message) {
	if q.maxReceiveCount == 0 {
		return
	}
	for _, msg := range failed {
		if receiveCount(msg) >= q.maxReceiveCount {
			m.stats.deadLettered.Add(1)
		}
	}
}

// delete removes msgs from the queue, ten per call.
func (m *Mapping) delete(ctx context.Context, msgs []types.Message) {
	log := m.cfg.Logger.With("queue", m.cfg.QueueURL)
	for start := 0; start < len(msgs); start += maxReceivePerCall {
		chunk := msgs[start:min(start+maxReceivePerCall, len(msgs))]
		entries := make([]types.DeleteMessageBatchRequestEntry, len(chunk))
		for i, msg := range chunk {
			entries[i] = types.DeleteMessageBatchRequestEntry{
				Id:            aws.String(strconv.Itoa(i)),
				ReceiptHandle: msg.ReceiptHandle,
			}
		}
		out, err := m.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{
			QueueUrl: aws.String(m.cfg.QueueURL),
			Entries:  entries,
		})
		if err != nil {
			m.stats.deleteErrors.Add(int64(len(chunk)))
			log.Warn("delete failed", "messages", len(chunk), "err", err)
			continue
		}
		m.stats.deleted.Add(int64(len(out.Successful)))
		m.stats.deleteErrors.Add(int64(len(out.Failed)))
		for _, f := range out.Failed {
			log.Warn("delete failed", "entry", aws.ToString(f.Id), "code", aws.ToString(f.Code), "message", aws.ToString(f.Message))
		}
	}
}
