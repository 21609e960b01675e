package sqspoller

import (
	"strconv"
	"strings"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// EventSource is the eventSource of every SQS record.
const EventSource = "aws:sqs"

// source identifies the queue records come from.
type source struct {
	ARN    string
	Region string
}

// regionFromARN returns the region field of an ARN, or "" if arn is not one.
func regionFromARN(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 || parts[0] != "arn" {
		return ""
	}
	return parts[3]
}

// newEvent builds the event Lambda would deliver for msgs.
func newEvent(src source, msgs []types.Message) events.SQSEvent {
	ev := events.SQSEvent{Records: make([]events.SQSMessage, len(msgs))}
	for i, m := range msgs {
		ev.Records[i] = newRecord(src, m)
	}
	return ev
}

func newRecord(src source, m types.Message) events.SQSMessage {
	attrs := make(map[string]string, len(m.Attributes))
	for k, v := range m.Attributes {
		attrs[k] = v
	}
	msgAttrs := make(map[string]events.SQSMessageAttribute, len(m.MessageAttributes))
	for k, v := range m.MessageAttributes {
		a := events.SQSMessageAttribute{
			StringValue:      v.StringValue,
			BinaryValue:      v.BinaryValue,
			StringListValues: v.StringListValues,
			BinaryListValues: v.BinaryListValues,
			DataType:         aws.ToString(v.DataType),
		}
		// Lambda sends empty lists rather than null.
		if a.StringListValues == nil {
			a.StringListValues = []string{}
		}
		if a.BinaryListValues == nil {
			a.BinaryListValues = [][]byte{}
		}
		msgAttrs[k] = a
	}
	return events.SQSMessage{
		MessageId:              aws.ToString(m.MessageId),
		ReceiptHandle:          aws.ToString(m.ReceiptHandle),
		Body:                   aws.ToString(m.Body),
		Md5OfBody:              aws.ToString(m.MD5OfBody),
		Md5OfMessageAttributes: aws.ToString(m.MD5OfMessageAttributes),
		Attributes:             attrs,
		MessageAttributes:      msgAttrs,
		EventSourceARN:         src.ARN,
		EventSource:            EventSource,
		AWSRegion:              src.Region,
	}
}

// receiveCount returns a message's ApproximateReceiveCount, or 0 if absent.
func receiveCount(m types.Message) int {
	n, err := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	if err != nil {
		return 0
	}
	return n
}

// approxSize estimates a message's share of the event payload.
func approxSize(m types.Message) int {
	n := 512 + len(aws.ToString(m.Body)) + len(aws.ToString(m.ReceiptHandle))
	for k, v := range m.Attributes {
		n += len(k) + len(v)
	}
	for k, v := range m.MessageAttributes {
		n += len(k) + len(aws.ToString(v.StringValue)) + len(v.BinaryValue)*4/3
	}
	return n
}
