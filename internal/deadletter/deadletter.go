// Package deadletter sends messages that can never succeed straight to the
// dead-letter queue, with the reason as message attributes, instead of
// letting them fail maxReceiveCount times first.
package deadletter

import (
	"context"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Attribute names set on every dead letter.
const (
	AttrField           = "attribution.error_field"
	AttrReason          = "attribution.error_reason"
	AttrSourceMessageID = "attribution.source_message_id"
)

// batchLimit is SendMessageBatch's maximum number of entries.
const batchLimit = 10

// SendMessageBatchAPI is the part of the SQS API the queue uses.
type SendMessageBatchAPI interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// Letter is one rejected message.
type Letter struct {
	MessageID string
	Body      string
	Field     string
	Reason    string
}

// Queue is a dead-letter queue.
type Queue struct {
	Client SendMessageBatchAPI
	URL    string
}

// Send sends letters and returns the message IDs of those not sent.
func (q *Queue) Send(ctx context.Context, letters []Letter) (unsent []string, err error) {
	for len(letters) > 0 {
		chunk := letters[:min(len(letters), batchLimit)]
		letters = letters[len(chunk):]
		entries := make([]types.SendMessageBatchRequestEntry, len(chunk))
		for i, l := range chunk {
			entries[i] = types.SendMessageBatchRequestEntry{
				Id:          aws.String(strconv.Itoa(i)),
				MessageBody: aws.String(l.Body),
				MessageAttributes: map[string]types.MessageAttributeValue{
					AttrField:           stringAttr(orNone(l.Field)),
					AttrReason:          stringAttr(truncate(l.Reason, 1024)),
					AttrSourceMessageID: stringAttr(orNone(l.MessageID)),
				},
			}
		}
		out, callErr := q.Client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &q.URL, Entries: entries})
		if callErr != nil {
			for _, l := range chunk {
				unsent = append(unsent, l.MessageID)
			}
			err = fmt.Errorf("send %d dead letters: %w", len(chunk), callErr)
			continue
		}
		for _, f := range out.Failed {
			i, _ := strconv.Atoi(aws.ToString(f.Id))
			if i >= 0 && i < len(chunk) {
				unsent = append(unsent, chunk[i].MessageID)
				err = fmt.Errorf("send dead letter %s: %s: %s", chunk[i].MessageID, aws.ToString(f.Code), aws.ToString(f.Message))
			}
		}
	}
	return unsent, err
}

func stringAttr(v string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

// orNone keeps attribute values non-empty, as SQS requires.
func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return orNone(s)
	}
	return s[:n]
}
