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

// SendMessageBatch's limits: entries per call, and bytes per message and
// per call, where a message's bytes are its body plus, per attribute, its
// name, data type and value.
const (
	batchLimit   = 10
	payloadLimit = 256 << 10
)

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
		var chunk []Letter
		var entries []types.SendMessageBatchRequestEntry
		bytes := 0
		for len(letters) > 0 && len(entries) < batchLimit {
			l := letters[0]
			entry := types.SendMessageBatchRequestEntry{
				Id:          aws.String(strconv.Itoa(len(entries))),
				MessageBody: aws.String(l.Body),
				MessageAttributes: map[string]types.MessageAttributeValue{
					AttrField:           stringAttr(orNone(l.Field)),
					AttrReason:          stringAttr(truncate(l.Reason, 1024)),
					AttrSourceMessageID: stringAttr(orNone(l.MessageID)),
				},
			}
			size := MessageSize(entry)
			if size > payloadLimit {
				// SQS would refuse it: leave it to the redrive policy.
				unsent = append(unsent, l.MessageID)
				err = fmt.Errorf("dead letter %s is %d bytes with its reason, over the %d SQS accepts", l.MessageID, size, payloadLimit)
				letters = letters[1:]
				continue
			}
			if bytes+size > payloadLimit {
				break
			}
			bytes += size
			chunk, entries, letters = append(chunk, l), append(entries, entry), letters[1:]
		}
		if len(entries) == 0 {
			continue
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

// MessageSize is the size SQS counts for an entry against its limits: the
// body plus the name, data type and value of each message attribute.
func MessageSize(e types.SendMessageBatchRequestEntry) int {
	n := len(aws.ToString(e.MessageBody))
	for name, v := range e.MessageAttributes {
		n += len(name) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue)) + len(v.BinaryValue)
	}
	return n
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
