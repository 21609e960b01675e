package esm_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"decnet-attribution/internal/esm"
)

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	client := sqs.New(sqs.Options{Region: "us-east-1"})
	inv := esm.FuncInvoker(func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
		return events.SQSEventResponse{}, nil
	})
	const url = "http://127.0.0.1:1/123456789012/q"
	tests := []struct {
		name    string
		cfg     esm.Config
		wantErr bool
	}{
		{"defaults", esm.Config{QueueURL: url}, false},
		{"everything set", esm.Config{QueueURL: url, BatchSize: 10000, MaximumBatchingWindow: 300 * time.Second, VisibilityTimeout: 30 * time.Second, WaitTimeSeconds: 20, Pollers: 5, InvokeTimeout: time.Minute}, false},
		{"no queue", esm.Config{}, true},
		{"batch size too large", esm.Config{QueueURL: url, BatchSize: 10001, MaximumBatchingWindow: time.Second}, true},
		{"negative batch size", esm.Config{QueueURL: url, BatchSize: -1}, true},
		{"batch above ten without window", esm.Config{QueueURL: url, BatchSize: 11}, true},
		{"batch above ten with short window", esm.Config{QueueURL: url, BatchSize: 11, MaximumBatchingWindow: 500 * time.Millisecond}, true},
		{"batch above ten with window", esm.Config{QueueURL: url, BatchSize: 11, MaximumBatchingWindow: time.Second}, false},
		{"window too long", esm.Config{QueueURL: url, MaximumBatchingWindow: 301 * time.Second}, true},
		{"negative window", esm.Config{QueueURL: url, MaximumBatchingWindow: -time.Second}, true},
		{"fractional visibility timeout", esm.Config{QueueURL: url, VisibilityTimeout: 1500 * time.Millisecond}, true},
		{"visibility timeout too long", esm.Config{QueueURL: url, VisibilityTimeout: 13 * time.Hour}, true},
		{"wait too long", esm.Config{QueueURL: url, WaitTimeSeconds: 21}, true},
		{"negative wait", esm.Config{QueueURL: url, WaitTimeSeconds: -1}, true},
		{"negative pollers", esm.Config{QueueURL: url, Pollers: -1}, true},
		{"negative invoke timeout", esm.Config{QueueURL: url, InvokeTimeout: -time.Second}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := esm.New(client, inv, tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New = %v, want error: %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, esm.ErrInvalidConfig) {
				t.Errorf("New = %v, want it to wrap ErrInvalidConfig", err)
			}
		})
	}
	if _, err := esm.New(nil, inv, esm.Config{QueueURL: url}); !errors.Is(err, esm.ErrInvalidConfig) {
		t.Errorf("New with nil client = %v, want ErrInvalidConfig", err)
	}
	if _, err := esm.New(client, nil, esm.Config{QueueURL: url}); !errors.Is(err, esm.ErrInvalidConfig) {
		t.Errorf("New with nil invoker = %v, want ErrInvalidConfig", err)
	}
}
