package sqspoller_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"decnet-attribution/internal/testrig/sqspoller"
)

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	client := sqs.New(sqs.Options{Region: "us-east-1"})
	inv := sqspoller.FuncInvoker(func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
		return events.SQSEventResponse{}, nil
	})
	const url = "http://127.0.0.1:1/123456789012/q"
	tests := []struct {
		name    string
		cfg     sqspoller.Config
		wantErr bool
	}{
		{"defaults", sqspoller.Config{QueueURL: url}, false},
		{"everything set", sqspoller.Config{QueueURL: url, BatchSize: 10000, MaximumBatchingWindow: 300 * time.Second, VisibilityTimeout: 30 * time.Second, WaitTimeSeconds: 20, Pollers: 5, InvokeTimeout: time.Minute}, false},
		{"no queue", sqspoller.Config{}, true},
		{"batch size too large", sqspoller.Config{QueueURL: url, BatchSize: 10001, MaximumBatchingWindow: time.Second}, true},
		{"negative batch size", sqspoller.Config{QueueURL: url, BatchSize: -1}, true},
		{"batch above ten without window", sqspoller.Config{QueueURL: url, BatchSize: 11}, true},
		{"batch above ten with short window", sqspoller.Config{QueueURL: url, BatchSize: 11, MaximumBatchingWindow: 500 * time.Millisecond}, true},
		{"batch above ten with window", sqspoller.Config{QueueURL: url, BatchSize: 11, MaximumBatchingWindow: time.Second}, false},
		{"window too long", sqspoller.Config{QueueURL: url, MaximumBatchingWindow: 301 * time.Second}, true},
		{"negative window", sqspoller.Config{QueueURL: url, MaximumBatchingWindow: -time.Second}, true},
		{"fractional visibility timeout", sqspoller.Config{QueueURL: url, VisibilityTimeout: 1500 * time.Millisecond}, true},
		{"visibility timeout too long", sqspoller.Config{QueueURL: url, VisibilityTimeout: 13 * time.Hour}, true},
		{"wait too long", sqspoller.Config{QueueURL: url, WaitTimeSeconds: 21}, true},
		{"negative wait", sqspoller.Config{QueueURL: url, WaitTimeSeconds: -1}, true},
		{"negative pollers", sqspoller.Config{QueueURL: url, Pollers: -1}, true},
		{"negative invoke timeout", sqspoller.Config{QueueURL: url, InvokeTimeout: -time.Second}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sqspoller.New(client, inv, tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New = %v, want error: %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, sqspoller.ErrInvalidConfig) {
				t.Errorf("New = %v, want it to wrap ErrInvalidConfig", err)
			}
		})
	}
	if _, err := sqspoller.New(nil, inv, sqspoller.Config{QueueURL: url}); !errors.Is(err, sqspoller.ErrInvalidConfig) {
		t.Errorf("New with nil client = %v, want ErrInvalidConfig", err)
	}
	if _, err := sqspoller.New(client, nil, sqspoller.Config{QueueURL: url}); !errors.Is(err, sqspoller.ErrInvalidConfig) {
		t.Errorf("New with nil invoker = %v, want ErrInvalidConfig", err)
	}
}
