package devstack

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"decnet-attribution/internal/attribution"
)

// BusEvent is an event as EventBridge delivers it to an SQS target.
type BusEvent struct {
	ID         string          `json:"id"`
	Source     string          `json:"source"`
	DetailType string          `json:"detail-type"`
	Detail     json.RawMessage `json:"detail"`
}

// AddEventsTap creates an SQS queue that receives every event the function
// puts on the stack's bus, through a catch-all rule the template does not
// have (its alert rule routes only some events), and returns the queue's
// URL.
func AddEventsTap(ctx context.Context, cfg aws.Config, stack *Stack) (string, error) {
	sq, eb := sqs.NewFromConfig(cfg), eventbridge.NewFromConfig(cfg)
	name := UniqueName(stack.Name + "-tap-")
	q, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		return "", fmt.Errorf("create events tap queue: %w", err)
	}
	attrs, err := sq.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", fmt.Errorf("events tap queue ARN: %w", err)
	}
	bus := stack.BusName(AttributionBusID)
	pattern, _ := json.Marshal(map[string][]string{"source": {attribution.EventSource}}) // strings always marshal
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{
		Name: aws.String(name), EventBusName: aws.String(bus), EventPattern: aws.String(string(pattern)),
	}); err != nil {
		return "", fmt.Errorf("events tap rule: %w", err)
	}
	if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{
		Rule: aws.String(name), EventBusName: aws.String(bus),
		Targets: []ebtypes.Target{{Id: aws.String("tap"), Arn: aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)])}},
	}); err != nil {
		return "", fmt.Errorf("events tap target: %w", err)
	}
	return aws.ToString(q.QueueUrl), nil
}
