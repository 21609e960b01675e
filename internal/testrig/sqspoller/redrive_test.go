package sqspoller_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// TestMotoEnforcesRedrivePolicy establishes, with plain SQS calls, that the
// moto server moves a message to the dead-letter queue on the receive after
// its receive count reached maxReceiveCount, keeping its ID, body and
// message attributes. The mapping relies on this instead of moving messages
// itself.
func TestMotoEnforcesRedrivePolicy(t *testing.T) {
	t.Parallel()
	client := mustSQSClient(t)
	const maxReceiveCount = 2
	q := mustQueue(t, client, maxReceiveCount)
	id := mustSend(t, client, q.URL, `{"id":"obs-1"}`, "observation")
	ctx := context.Background()

	receive := func(wait int32) []types.Message {
		t.Helper()
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(q.URL),
			MaxNumberOfMessages:         10,
			WaitTimeSeconds:             wait,
			VisibilityTimeout:           1,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
		})
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		return out.Messages
	}

	// Delivered maxReceiveCount times, each after the previous receive's
	// visibility timeout expired.
	for want := 1; want <= maxReceiveCount; want++ {
		msgs := receive(5)
		if len(msgs) != 1 || aws.ToString(msgs[0].MessageId) != id {
			t.Fatalf("receive %d: got %d messages, want the one sent", want, len(msgs))
		}
		if got := msgs[0].Attributes["ApproximateReceiveCount"]; got != strconv.Itoa(want) {
			t.Fatalf("receive %d: ApproximateReceiveCount = %q", want, got)
		}
	}
	// The next receive, long enough to see the visibility timeout expire,
	// gets nothing: the message has moved.
	if msgs := receive(3); len(msgs) != 0 {
		t.Fatalf("receive %d: got %d messages, want none (moved to the DLQ)", maxReceiveCount+1, len(msgs))
	}
	if c := mustQueueCounts(t, client, q.URL); c != [3]int{} {
		t.Fatalf("source queue counts (visible, in flight, delayed) = %v, want all zero", c)
	}
	dead := mustDrainAll(t, client, q.DLQURL)
	if len(dead) != 1 {
		t.Fatalf("DLQ holds %d messages, want 1", len(dead))
	}
	m := dead[0]
	if aws.ToString(m.MessageId) != id {
		t.Errorf("DLQ message ID = %q, want %q", aws.ToString(m.MessageId), id)
	}
	if aws.ToString(m.Body) != `{"id":"obs-1"}` {
		t.Errorf("DLQ body = %q", aws.ToString(m.Body))
	}
	if a := m.MessageAttributes["kind"]; aws.ToString(a.StringValue) != "observation" || aws.ToString(a.DataType) != "String" {
		t.Errorf("DLQ message attribute kind = %+v", a)
	}
}

// TestMotoWithoutRedrivePolicyKeepsRedelivering is the control: with no
// RedrivePolicy the same message keeps coming back.
func TestMotoWithoutRedrivePolicyKeepsRedelivering(t *testing.T) {
	t.Parallel()
	client := mustSQSClient(t)
	q := mustQueue(t, client, 0)
	id := mustSend(t, client, q.URL, "again", "observation")
	for i := 1; i <= 3; i++ {
		out, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl:          aws.String(q.URL),
			WaitTimeSeconds:   5,
			VisibilityTimeout: 1,
		})
		if err != nil {
			t.Fatalf("receive %d: %v", i, err)
		}
		if len(out.Messages) != 1 || aws.ToString(out.Messages[0].MessageId) != id {
			t.Fatalf("receive %d: got %d messages, want the one sent", i, len(out.Messages))
		}
	}
}
