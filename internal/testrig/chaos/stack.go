package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/backoff"
	"decnet-attribution/internal/ddbstore"
	"decnet-attribution/internal/testrig/devstack"
)

// stack is one scenario's own copy of the template's resources, plus an
// "events" queue that a catch-all rule on the bus feeds with every event
// (the template's alert rule routes only some of them).
type stack struct {
	*devstack.Stack
	cfg       aws.Config // direct to the endpoint, no faults
	sqs       *sqs.Client
	store     *ddbstore.Store
	eventsURL string
}

func provision(ctx context.Context, env Env, name string, params map[string]string) (*stack, error) {
	cfg := devstack.AWSConfig(env.Endpoint, devstack.DefaultRegion)
	clients := devstack.NewClients(cfg)
	st, err := devstack.Provision(ctx, clients, env.Template, devstack.Options{
		StackName: devstack.UniqueName("chaos-" + name + "-"), Endpoint: env.Endpoint, Parameters: params,
	})
	if err != nil {
		return nil, fmt.Errorf("provision stack: %w", err)
	}
	s := &stack{
		Stack: st, cfg: cfg, sqs: sqs.NewFromConfig(cfg),
		store: ddbstore.New(dynamodb.NewFromConfig(cfg), ddbstore.Tables{
			Identities:   st.TableName(devstack.IdentitiesTableID),
			Observations: st.TableName(devstack.ObservationsTableID),
			States:       st.TableName(devstack.StatesTableID),
		}, 0),
	}
	if s.eventsURL, err = devstack.AddEventsTap(ctx, cfg, st); err != nil {
		return nil, err
	}
	return s, nil
}

// Warm makes the endpoint ready for concurrent scenarios: moto builds its
// EventBridge input-path parsers (about a second of CPU) on the first
// delivery to a target, and concurrent first deliveries each build their
// own. One delivery first avoids that.
func Warm(ctx context.Context, env Env) error {
	cfg := devstack.AWSConfig(env.Endpoint, devstack.DefaultRegion)
	q := sqs.NewFromConfig(cfg)
	eb := eventbridge.NewFromConfig(cfg)
	name := devstack.UniqueName("chaos-warm-")
	out, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		return fmt.Errorf("warm up: %w", err)
	}
	arn := fmt.Sprintf("arn:aws:sqs:%s:%s:%s", devstack.DefaultRegion, devstack.DefaultAccountID, name)
	source := "chaos.warm." + name // its own, so no earlier warm-up's rule matches
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(name), EventPattern: aws.String(mustJSON(map[string]any{"source": []string{source}}))}); err != nil {
		return fmt.Errorf("warm up: %w", err)
	}
	if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(name), Targets: []ebtypes.Target{{Id: aws.String("q"), Arn: aws.String(arn)}}}); err != nil {
		return fmt.Errorf("warm up: %w", err)
	}
	if _, err := eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
		Source: aws.String(source), DetailType: aws.String("warm"), Detail: aws.String("{}"),
	}}}); err != nil {
		return fmt.Errorf("warm up: %w", err)
	}
	if _, err := eb.RemoveTargets(ctx, &eventbridge.RemoveTargetsInput{Rule: aws.String(name), Ids: []string{"q"}}); err != nil {
		return fmt.Errorf("warm up: %w", err)
	}
	if _, err := eb.DeleteRule(ctx, &eventbridge.DeleteRuleInput{Name: aws.String(name)}); err != nil {
		return fmt.Errorf("warm up: %w", err)
	}
	if _, err := q.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: out.QueueUrl}); err != nil {
		return fmt.Errorf("warm up: %w", err)
	}
	return nil
}

// useEndpoint sends the harness's own DynamoDB reads through endpoint.
func (s *stack) useEndpoint(endpoint string) {
	s.store = ddbstore.New(dynamodb.NewFromConfig(devstack.AWSConfig(endpoint, devstack.DefaultRegion)), s.store.Tables, 0)
}

// queueDepth returns the messages a queue holds: visible, in flight or
// delayed.
func (s *stack) queueDepth(ctx context.Context, url string) (int, error) {
	names := []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
	}
	out, err := s.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: names})
	if err != nil {
		return 0, fmt.Errorf("queue attributes of %s: %w", url, err)
	}
	total := 0
	for _, name := range names {
		n, err := strconv.Atoi(out.Attributes[string(name)])
		if err != nil {
			return 0, fmt.Errorf("queue attributes of %s: %s is %q", url, name, out.Attributes[string(name)])
		}
		total += n
	}
	return total, nil
}

// send sends messages in order, ten per call.
func (s *stack) send(ctx context.Context, msgs []Message) error {
	url := s.QueueURL(devstack.ObservationQueueID)
	for start := 0; start < len(msgs); start += 10 {
		chunk := msgs[start:min(start+10, len(msgs))]
		entries := make([]sqstypes.SendMessageBatchRequestEntry, len(chunk))
		for i, m := range chunk {
			entries[i] = sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(m.Body)}
		}
		out, err := s.sqs.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
		if err != nil {
			return fmt.Errorf("send messages: %w", err)
		}
		if len(out.Failed) > 0 {
			f := out.Failed[0]
			return fmt.Errorf("send messages: entry %s: %s: %s", aws.ToString(f.Id), aws.ToString(f.Code), aws.ToString(f.Message))
		}
	}
	return nil
}

// receiveAll reads every message of a queue, leaving them invisible for
// long enough not to read one twice, until two receives in a row find
// nothing (moto answers from the whole queue, without sampling).
func (s *stack) receiveAll(ctx context.Context, url string) ([]sqstypes.Message, error) {
	var out []sqstypes.Message
	for empty := 0; empty < 2; {
		got, err := s.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, VisibilityTimeout: 3600,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
		})
		if err != nil {
			return nil, fmt.Errorf("receive from %s: %w", url, err)
		}
		if len(got.Messages) == 0 {
			empty++
			continue
		}
		empty = 0
		out = append(out, got.Messages...)
	}
	return out, nil
}

// busEvents reads every event of an event queue.
func (s *stack) busEvents(ctx context.Context, url string) ([]devstack.BusEvent, error) {
	msgs, err := s.receiveAll(ctx, url)
	if err != nil {
		return nil, err
	}
	out := make([]devstack.BusEvent, 0, len(msgs))
	for _, m := range msgs {
		var ev devstack.BusEvent
		if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &ev); err != nil {
			return nil, fmt.Errorf("event queue message %s: %w", aws.ToString(m.MessageId), err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// DeadLetter is a message of the dead-letter queue.
type DeadLetter struct {
	MessageID       string
	Body            string
	Field, Reason   string // the attributes the function sets, if it sent it
	SourceMessageID string
	ReceiveCount    int
}

func (s *stack) deadLetters(ctx context.Context) ([]DeadLetter, error) {
	msgs, err := s.receiveAll(ctx, s.QueueURL(devstack.ObservationDeadLetterQueueID))
	if err != nil {
		return nil, err
	}
	attr := func(m sqstypes.Message, name string) string {
		if v, ok := m.MessageAttributes[name]; ok {
			return aws.ToString(v.StringValue)
		}
		return ""
	}
	out := make([]DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		n, _ := strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
		out = append(out, DeadLetter{
			MessageID: aws.ToString(m.MessageId), Body: aws.ToString(m.Body),
			Field: attr(m, "attribution.error_field"), Reason: attr(m, "attribution.error_reason"),
			SourceMessageID: attr(m, "attribution.source_message_id"), ReceiveCount: n,
		})
	}
	return out, nil
}

// finalRecords reads the stored records of every series of the stream.
func (s *stack) finalRecords(ctx context.Context, series map[string][]string) (map[attribution.SeriesKey]*attribution.SeriesRecord, map[string]*attribution.IdentityRecord, error) {
	recs := map[attribution.SeriesKey]*attribution.SeriesRecord{}
	idents := map[string]*attribution.IdentityRecord{}
	for attacker, prims := range series {
		identity := attribution.StubIdentityID(attacker)
		got, err := retryRead(ctx, func() (map[string]*attribution.SeriesRecord, error) {
			return s.store.LoadSeries(ctx, identity, prims, true)
		})
		if err != nil {
			return nil, nil, err
		}
		for p, r := range got {
			r.AttackerUUID = attacker
			recs[attribution.SeriesKey{IdentityUUID: identity, Primitive: p}] = r
		}
		id, err := retryRead(ctx, func() (*attribution.IdentityRecord, error) { return s.store.LoadIdentity(ctx, identity, true) })
		if err != nil {
			return nil, nil, err
		}
		idents[identity] = id
	}
	return recs, idents, nil
}

func retryRead[T any](ctx context.Context, read func() (T, error)) (T, error) {
	var v T
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if v, err = read(); err == nil {
			return v, nil
		}
		if backoff.Sleep(ctx, 100*time.Millisecond) != nil {
			return v, err
		}
	}
	return v, err
}

// finalIdentities reads, for a stream with identity events, every
// attacker's record and the records of every identity: the attackers'
// stubs and DECNET's identities, canonical or retired, with all their
// series.
func (s *stack) finalIdentities(ctx context.Context, attackers, identities []string) (map[attribution.SeriesKey]*attribution.SeriesRecord, map[string]*attribution.IdentityRecord, map[string]*attribution.AttackerRecord, error) {
	recs := map[attribution.SeriesKey]*attribution.SeriesRecord{}
	idents := map[string]*attribution.IdentityRecord{}
	records := map[string]*attribution.AttackerRecord{}
	ids := slices.Clone(identities)
	for _, a := range attackers {
		rec, err := retryRead(ctx, func() (*attribution.AttackerRecord, error) { return s.store.LoadAttacker(ctx, a) })
		if err != nil {
			return nil, nil, nil, err
		}
		records[a] = rec
		ids = append(ids, attribution.StubIdentityID(a))
	}
	for _, id := range ids {
		got, err := retryRead(ctx, func() (map[string]*attribution.SeriesRecord, error) { return s.store.LoadIdentitySeries(ctx, id) })
		if err != nil {
			return nil, nil, nil, err
		}
		node, err := retryRead(ctx, func() (*attribution.IdentityRecord, error) { return s.store.LoadIdentity(ctx, id, true) })
		if err != nil {
			return nil, nil, nil, err
		}
		node.IdentityUUID = id
		idents[id] = node
		for p, r := range got {
			if !r.Orphaned(node.Membership) { // an orphan holds nothing applied
				recs[attribution.SeriesKey{IdentityUUID: id, Primitive: p}] = r
			}
		}
	}
	return recs, idents, records, nil
}
