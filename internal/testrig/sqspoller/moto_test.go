package sqspoller_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/devstack"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// mustMotoEndpoint returns the endpoint of the moto server shared by the
// package's tests, starting it if needed; the test fails if it cannot run.
func mustMotoEndpoint(tb testing.TB) string {
	tb.Helper()
	return awstest.Moto(tb).Endpoint
}

// mustSQSClient returns an SQS client for the shared moto server.
func mustSQSClient(tb testing.TB) *sqs.Client {
	tb.Helper()
	return sqs.NewFromConfig(awstest.Moto(tb).Config())
}

// testQueue is a source queue, with its dead-letter queue if it has one.
type testQueue struct {
	URL, ARN       string
	DLQURL, DLQARN string
}

// mustQueue creates a uniquely named queue with a 1 s visibility timeout and,
// when maxReceiveCount > 0, a dead-letter queue behind a RedrivePolicy.
func mustQueue(tb testing.TB, client *sqs.Client, maxReceiveCount int) testQueue {
	tb.Helper()
	ctx := context.Background()
	name := devstack.UniqueName("esm-")
	var q testQueue
	attrs := map[string]string{"VisibilityTimeout": "1"}
	if maxReceiveCount > 0 {
		q.DLQURL, q.DLQARN = mustCreateQueue(tb, client, name+"-dlq", nil)
		attrs["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"%d"}`, q.DLQARN, maxReceiveCount)
	}
	q.URL, q.ARN = mustCreateQueue(tb, client, name, attrs)
	tb.Cleanup(func() {
		_, _ = client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(q.URL)})
		if q.DLQURL != "" {
			_, _ = client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(q.DLQURL)})
		}
	})
	return q
}

func mustCreateQueue(tb testing.TB, client *sqs.Client, name string, attrs map[string]string) (url, arn string) {
	tb.Helper()
	ctx := context.Background()
	out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		tb.Fatalf("create queue %s: %v", name, err)
	}
	got, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       out.QueueUrl,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		tb.Fatalf("queue ARN of %s: %v", name, err)
	}
	return aws.ToString(out.QueueUrl), got.Attributes["QueueArn"]
}

// mustSend sends body with a string message attribute "kind" and returns the
// message ID.
func mustSend(tb testing.TB, client *sqs.Client, queueURL, body, kind string) string {
	tb.Helper()
	out, err := client.SendMessage(context.Background(), &sqs.SendMessageInput{
		QueueUrl:    aws.String(queueURL),
		MessageBody: aws.String(body),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"kind": {DataType: aws.String("String"), StringValue: aws.String(kind)},
		},
	})
	if err != nil {
		tb.Fatalf("send %q: %v", body, err)
	}
	return aws.ToString(out.MessageId)
}

// mustDrainAll receives every message currently visible in a queue
// (deleting them) and returns them.
func mustDrainAll(tb testing.TB, client *sqs.Client, queueURL string) []types.Message {
	tb.Helper()
	ctx := context.Background()
	var all []types.Message
	for {
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(queueURL),
			MaxNumberOfMessages:         10,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
			VisibilityTimeout:           30,
		})
		if err != nil {
			tb.Fatalf("receive from %s: %v", queueURL, err)
		}
		if len(out.Messages) == 0 {
			return all
		}
		for _, m := range out.Messages {
			if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				tb.Fatalf("delete from %s: %v", queueURL, err)
			}
		}
		all = append(all, out.Messages...)
	}
}

// mustQueueCounts returns the visible, not-visible and delayed counts.
func mustQueueCounts(tb testing.TB, client *sqs.Client, queueURL string) [3]int {
	tb.Helper()
	out, err := client.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		},
	})
	if err != nil {
		tb.Fatalf("queue attributes of %s: %v", queueURL, err)
	}
	var c [3]int
	for i, k := range []string{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"} {
		n, err := strconv.Atoi(out.Attributes[k])
		if err != nil {
			tb.Fatalf("%s of %s: %v", k, queueURL, err)
		}
		c[i] = n
	}
	return c
}
