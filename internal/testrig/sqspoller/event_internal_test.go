package sqspoller

import (
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// TestNewEventMatchesLambdaShape compares the JSON of a built event with the
// record layout Lambda delivers for a standard queue.
func TestNewEventMatchesLambdaShape(t *testing.T) {
	msg := types.Message{
		MessageId:              aws.String("059f36b4-87a3-44ab-83d2-661975830a7d"),
		ReceiptHandle:          aws.String("AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a"),
		Body:                   aws.String(`{"id":"obs-1"}`),
		MD5OfBody:              aws.String("e4e68fb7bd0e697a0ae8f1bb342846b3"),
		MD5OfMessageAttributes: aws.String("f3b1b7c7e6e3b6d0e4d3c2b1a0f9e8d7"),
		Attributes: map[string]string{
			"ApproximateReceiveCount":          "1",
			"SentTimestamp":                    "1545082649183",
			"SenderId":                         "AIDAIENQZJOLO23YVJ4VO",
			"ApproximateFirstReceiveTimestamp": "1545082649185",
		},
		MessageAttributes: map[string]types.MessageAttributeValue{
			"kind": {DataType: aws.String("String"), StringValue: aws.String("observation")},
			"blob": {DataType: aws.String("Binary"), BinaryValue: []byte("10")},
		},
	}
	src := source{ARN: "arn:aws:sqs:eu-west-1:123456789012:ObservationQueue", Region: "eu-west-1"}
	got, err := json.Marshal(newEvent(src, []types.Message{msg}))
	if err != nil {
		t.Fatalf("marshal event: %v", err)
	}
	const want = `{"Records":[{
		"messageId":"059f36b4-87a3-44ab-83d2-661975830a7d",
		"receiptHandle":"AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
		"body":"{\"id\":\"obs-1\"}",
		"md5OfBody":"e4e68fb7bd0e697a0ae8f1bb342846b3",
		"md5OfMessageAttributes":"f3b1b7c7e6e3b6d0e4d3c2b1a0f9e8d7",
		"attributes":{
			"ApproximateReceiveCount":"1",
			"SentTimestamp":"1545082649183",
			"SenderId":"AIDAIENQZJOLO23YVJ4VO",
			"ApproximateFirstReceiveTimestamp":"1545082649185"
		},
		"messageAttributes":{
			"kind":{"stringValue":"observation","stringListValues":[],"binaryListValues":[],"dataType":"String"},
			"blob":{"binaryValue":"MTA=","stringListValues":[],"binaryListValues":[],"dataType":"Binary"}
		},
		"eventSourceARN":"arn:aws:sqs:eu-west-1:123456789012:ObservationQueue",
		"eventSource":"aws:sqs",
		"awsRegion":"eu-west-1"
	}]}`
	if !jsonEqual(t, got, []byte(want)) {
		t.Errorf("event JSON\n got %s\nwant %s", got, want)
	}
}

func TestNewEventWithoutAttributes(t *testing.T) {
	ev := newEvent(source{}, []types.Message{{MessageId: aws.String("m"), Body: aws.String("b")}})
	got, err := json.Marshal(ev.Records[0])
	if err != nil {
		t.Fatalf("marshal record: %v", err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatalf("unmarshal record: %v", err)
	}
	// Maps are present and empty, never null.
	if string(doc["attributes"]) != "{}" || string(doc["messageAttributes"]) != "{}" {
		t.Errorf("attributes %s, messageAttributes %s, want {} and {}", doc["attributes"], doc["messageAttributes"])
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("unmarshal %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	ca, _ := json.Marshal(x)
	cb, _ := json.Marshal(y)
	return string(ca) == string(cb)
}

func TestRegionFromARN(t *testing.T) {
	tests := []struct{ arn, want string }{
		{"arn:aws:sqs:us-east-1:123456789012:q", "us-east-1"},
		{"arn:aws-cn:sqs:cn-north-1:123456789012:q", "cn-north-1"},
		{"", ""},
		{"not-an-arn", ""},
	}
	for _, tt := range tests {
		if got := regionFromARN(tt.arn); got != tt.want {
			t.Errorf("regionFromARN(%q) = %q, want %q", tt.arn, got, tt.want)
		}
	}
}

func TestParseRedrivePolicy(t *testing.T) {
	const dlq = "arn:aws:sqs:us-east-1:123456789012:dlq"
	tests := []struct {
		name    string
		in      string
		want    redrivePolicy
		wantErr bool
	}{
		{"number", `{"deadLetterTargetArn":"` + dlq + `","maxReceiveCount":5}`, redrivePolicy{dlq, 5}, false},
		{"string", `{"deadLetterTargetArn":"` + dlq + `","maxReceiveCount":"3"}`, redrivePolicy{dlq, 3}, false},
		{"zero", `{"deadLetterTargetArn":"` + dlq + `","maxReceiveCount":0}`, redrivePolicy{}, true},
		{"not a number", `{"deadLetterTargetArn":"` + dlq + `","maxReceiveCount":"many"}`, redrivePolicy{}, true},
		{"missing count", `{"deadLetterTargetArn":"` + dlq + `"}`, redrivePolicy{}, true},
		{"missing target", `{"maxReceiveCount":3}`, redrivePolicy{}, true},
		{"not JSON", `maxReceiveCount=3`, redrivePolicy{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRedrivePolicy(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseRedrivePolicy(%s) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
