package awstest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"decnet-attribution/internal/testrig/devstack"
)

// Tap is an SQS queue that receives every event the service puts on a
// stack's bus (see devstack.AddEventsTap).
type Tap struct {
	URL    string
	client *sqs.Client
}

// BusEvent is an event as EventBridge delivers it to an SQS target.
type BusEvent = devstack.BusEvent

// NewTap creates the queue and the rule on the stack's bus.
func NewTap(tb testing.TB, srv *Server, stack *devstack.Stack) *Tap {
	tb.Helper()
	url, err := devstack.AddEventsTap(context.Background(), srv.Config(), stack)
	if err != nil {
		tb.Fatal(err)
	}
	return &Tap{URL: url, client: sqs.NewFromConfig(srv.Config())}
}

// Drain receives and deletes everything the queue holds, waiting until it
// has stayed empty for quiet.
func (t *Tap) Drain(tb testing.TB, quiet time.Duration) []BusEvent {
	tb.Helper()
	return Drain(tb, t.client, t.URL, 0, quiet)
}

// DrainAtLeast is Drain that first waits (up to a minute) for at least n
// events: an empty receive does not prove the queue is empty.
func (t *Tap) DrainAtLeast(tb testing.TB, n int, quiet time.Duration) []BusEvent {
	tb.Helper()
	return Drain(tb, t.client, t.URL, n, quiet)
}

// Drain receives and deletes every message of an SQS queue whose body is
// an EventBridge event: at least atLeast of them (waiting up to a minute),
// then until the queue stays empty for quiet.
func Drain(tb testing.TB, client *sqs.Client, url string, atLeast int, quiet time.Duration) []BusEvent {
	tb.Helper()
	ctx := context.Background()
	var out []BusEvent
	idleSince := time.Now()
	deadline := time.Now().Add(time.Minute)
	for len(out) < atLeast && time.Now().Before(deadline) || time.Since(idleSince) < quiet {
		got, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10})
		if err != nil {
			tb.Fatalf("receive from %s: %v", url, err)
		}
		if len(got.Messages) == 0 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		idleSince = time.Now()
		entries := make([]sqstypes.DeleteMessageBatchRequestEntry, 0, len(got.Messages))
		for i, m := range got.Messages {
			var ev BusEvent
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &ev); err != nil {
				tb.Fatalf("queue %s: not an EventBridge event: %v", url, err)
			}
			out = append(out, ev)
			entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
		}
		if _, err := client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: entries}); err != nil {
			tb.Fatalf("delete from %s: %v", url, err)
		}
	}
	return out
}
