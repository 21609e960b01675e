package sqspoller

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// Limits mirrored from Lambda's SQS event source mapping and SQS.
const (
	DefaultBatchSize       = 10
	MaxBatchSize           = 10000
	MaxBatchingWindow      = 300 * time.Second
	DefaultWaitTimeSeconds = 20
	maxVisibilityTimeout   = 12 * time.Hour
	maxReceivePerCall      = 10
	maxPayloadBytes        = 6 << 20
)

// Config describes one event source mapping.
type Config struct {
	// QueueURL is the source queue. Required.
	QueueURL string
	// BatchSize is the most messages per invocation, 1..10000; 0 means 10.
	// Above 10, MaximumBatchingWindow must be at least one second, as Lambda
	// requires.
	BatchSize int
	// MaximumBatchingWindow is how long a poller keeps receiving after the
	// first message of a batch before invoking with fewer than BatchSize
	// messages, 0..5m. 0 means invoke with what one ReceiveMessage returns.
	MaximumBatchingWindow time.Duration
	// VisibilityTimeout, when non-zero, overrides the queue's visibility
	// timeout on each ReceiveMessage. Whole seconds, at most 12h.
	VisibilityTimeout time.Duration
	// WaitTimeSeconds is the long-polling wait of each ReceiveMessage,
	// 1..20; 0 means 20. (Lambda's pollers always long-poll.)
	WaitTimeSeconds int
	// Pollers is the number of concurrent pollers; 0 means 1.
	Pollers int
	// InvokeTimeout, when non-zero, bounds each invocation's context, like a
	// function timeout. It only stops invokers that honour the context.
	InvokeTimeout time.Duration
	// Logger receives receive/delete errors and failed batches; nil discards.
	Logger *slog.Logger
}

// ErrInvalidConfig is wrapped by the errors New returns for a bad Config.
var ErrInvalidConfig = errors.New("invalid event source mapping config")

// withDefaults validates c and fills in defaults.
func (c Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.QueueURL == "" {
		return bad("QueueURL is required")
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchSize < 1 || c.BatchSize > MaxBatchSize {
		return bad("BatchSize %d not in 1..%d", c.BatchSize, MaxBatchSize)
	}
	if c.MaximumBatchingWindow < 0 || c.MaximumBatchingWindow > MaxBatchingWindow {
		return bad("MaximumBatchingWindow %s not in 0..%s", c.MaximumBatchingWindow, MaxBatchingWindow)
	}
	if c.BatchSize > maxReceivePerCall && c.MaximumBatchingWindow < time.Second {
		return bad("BatchSize %d above %d needs a MaximumBatchingWindow of at least 1s", c.BatchSize, maxReceivePerCall)
	}
	if c.VisibilityTimeout < 0 || c.VisibilityTimeout > maxVisibilityTimeout || c.VisibilityTimeout%time.Second != 0 {
		return bad("VisibilityTimeout %s must be whole seconds in 0..%s", c.VisibilityTimeout, maxVisibilityTimeout)
	}
	if c.WaitTimeSeconds == 0 {
		c.WaitTimeSeconds = DefaultWaitTimeSeconds
	}
	if c.WaitTimeSeconds < 1 || c.WaitTimeSeconds > 20 {
		return bad("WaitTimeSeconds %d not in 1..20", c.WaitTimeSeconds)
	}
	if c.Pollers == 0 {
		c.Pollers = 1
	}
	if c.Pollers < 0 {
		return bad("Pollers %d is negative", c.Pollers)
	}
	if c.InvokeTimeout < 0 {
		return bad("InvokeTimeout %s is negative", c.InvokeTimeout)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// redrivePolicy is a queue's RedrivePolicy attribute.
type redrivePolicy struct {
	DeadLetterTargetARN string
	MaxReceiveCount     int
}

// parseRedrivePolicy decodes a RedrivePolicy attribute. SQS accepts
// maxReceiveCount as a JSON number or a string holding one.
func parseRedrivePolicy(s string) (redrivePolicy, error) {
	var doc struct {
		DeadLetterTargetARN string          `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		return redrivePolicy{}, fmt.Errorf("parse redrive policy: %w", err)
	}
	raw := string(doc.MaxReceiveCount)
	if unquoted, err := strconv.Unquote(raw); err == nil {
		raw = unquoted
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 {
		return redrivePolicy{}, fmt.Errorf("parse redrive policy: maxReceiveCount %s is not a positive integer", doc.MaxReceiveCount)
	}
	if doc.DeadLetterTargetARN == "" {
		return redrivePolicy{}, errors.New("parse redrive policy: deadLetterTargetArn is missing")
	}
	return redrivePolicy{DeadLetterTargetARN: doc.DeadLetterTargetARN, MaxReceiveCount: n}, nil
}
