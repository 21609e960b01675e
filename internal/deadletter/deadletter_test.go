package deadletter_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"decnet-attribution/internal/deadletter"
)

// limitedSQS accepts batches as SQS does: at most 10 entries, and at most
// 256 KB of message bytes (body plus attribute names, types and values),
// per message and per call.
type limitedSQS struct {
	calls [][]types.SendMessageBatchRequestEntry
}

func (c *limitedSQS) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	total := 0
	for _, e := range in.Entries {
		total += deadletter.MessageSize(e)
	}
	if len(in.Entries) > 10 || total > 256<<10 {
		return nil, fmt.Errorf("BatchRequestTooLong: %d entries, %d bytes", len(in.Entries), total)
	}
	c.calls = append(c.calls, in.Entries)
	return &sqs.SendMessageBatchOutput{}, nil
}

func TestMessageSizeCountsAttributes(t *testing.T) {
	e := types.SendMessageBatchRequestEntry{
		MessageBody: aws.String("body"),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"a.b": {DataType: aws.String("String"), StringValue: aws.String("xyz")},
		},
	}
	if got := deadletter.MessageSize(e); got != 4+3+6+3 {
		t.Fatalf("MessageSize = %d, want body 4 + name 3 + type 6 + value 3", got)
	}
}

// TestSendSplitsByPayload: ten letters of 30 KB each fit one call by count
// but not by bytes; they must all be sent, in calls SQS accepts.
func TestSendSplitsByPayload(t *testing.T) {
	cases := []struct {
		name    string
		bodies  []int // body sizes
		unsent  int
		minCall int
	}{
		{name: "ten of 30 KB", bodies: []int{30 << 10, 30 << 10, 30 << 10, 30 << 10, 30 << 10, 30 << 10, 30 << 10, 30 << 10, 30 << 10, 30 << 10}, minCall: 2},
		// The body alone fits 256 KB, but not with the reason attributes.
		{name: "one at the limit", bodies: []int{256<<10 - 10, 100}, unsent: 1, minCall: 1},
		{name: "small ones", bodies: []int{100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100}, minCall: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client := &limitedSQS{}
			q := &deadletter.Queue{Client: client, URL: "https://sqs.example/dlq"}
			var letters []deadletter.Letter
			for i, n := range tc.bodies {
				letters = append(letters, deadletter.Letter{
					MessageID: fmt.Sprintf("m-%d", i), Body: strings.Repeat("x", n),
					Field: "value", Reason: "value: " + strings.Repeat("r", 2000),
				})
			}
			unsent, err := q.Send(context.Background(), letters)
			if len(unsent) != tc.unsent {
				t.Fatalf("unsent %v (err %v), want %d", unsent, err, tc.unsent)
			}
			if tc.unsent > 0 && (err == nil || !strings.Contains(err.Error(), "over the")) {
				t.Errorf("err = %v, want one saying the letter is too large", err)
			}
			sent := 0
			for _, c := range client.calls {
				sent += len(c)
			}
			if sent+len(unsent) != len(letters) || len(client.calls) < tc.minCall {
				t.Fatalf("sent %d in %d calls, unsent %d, of %d letters", sent, len(client.calls), len(unsent), len(letters))
			}
		})
	}
}
