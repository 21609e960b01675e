package eventbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/eventbus"
	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/devstack"
)

// routedBus is an event bus whose rule on Source decnet.attribution
// delivers to an SQS queue.
type routedBus struct {
	name     string
	queueURL string
	sqs      *sqs.Client
}

// mustRoutedBus creates a routed bus named prefix plus a random suffix, so
// that it is the test's own on the shared moto server.
func mustRoutedBus(tb testing.TB, ctx context.Context, eb *eventbridge.Client, sq *sqs.Client, prefix string) routedBus {
	tb.Helper()
	name := devstack.UniqueName(prefix + "-")
	if _, err := eb.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(name)}); err != nil {
		tb.Fatalf("create event bus %s: %v", name, err)
	}
	q, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-events")})
	if err != nil {
		tb.Fatalf("create queue: %v", err)
	}
	attrs, err := sq.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       q.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		tb.Fatalf("get queue ARN: %v", err)
	}
	pattern, err := json.Marshal(map[string]any{"source": []string{attribution.EventSource}})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{
		Name:         aws.String(name + "-to-queue"),
		EventBusName: aws.String(name),
		EventPattern: aws.String(string(pattern)),
	}); err != nil {
		tb.Fatalf("put rule: %v", err)
	}
	out, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{
		Rule:         aws.String(name + "-to-queue"),
		EventBusName: aws.String(name),
		Targets: []ebtypes.Target{{
			Id:  aws.String("queue"),
			Arn: aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]),
			// Deliver the event unchanged, as the whole-event variable.
			// Without a transformer moto compiles eight JSONPath parsers
			// per event to rebuild the same body, which takes seconds.
			InputTransformer: &ebtypes.InputTransformer{
				InputPathsMap: map[string]string{"source": "$.source"},
				InputTemplate: aws.String("<aws.events.event.json>"),
			},
		}},
	})
	if err != nil || out.FailedEntryCount != 0 {
		tb.Fatalf("put targets: %v (%d failed)", err, out.FailedEntryCount)
	}
	return routedBus{name: name, queueURL: aws.ToString(q.QueueUrl), sqs: sq}
}

// delivered is the part of an EventBridge event, as a target receives it,
// that the test checks.
type delivered struct {
	Source     string          `json:"source"`
	DetailType string          `json:"detail-type"`
	Detail     json.RawMessage `json:"detail"`
}

// mustReceive reads n events from the bus's queue, failing after a timeout.
func (b routedBus) mustReceive(tb testing.TB, ctx context.Context, n int) []delivered {
	tb.Helper()
	var got []delivered
	deadline := time.Now().Add(15 * time.Second)
	for len(got) < n {
		if time.Now().After(deadline) {
			tb.Fatalf("received %d of %d events", len(got), n)
		}
		out, err := b.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(b.queueURL),
			MaxNumberOfMessages: 10,
			WaitTimeSeconds:     0,
		})
		if err != nil {
			tb.Fatalf("receive: %v", err)
		}
		if len(out.Messages) == 0 {
			time.Sleep(50 * time.Millisecond)
		}
		for _, m := range out.Messages {
			var d delivered
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &d); err != nil {
				tb.Fatalf("decode message %q: %v", aws.ToString(m.Body), err)
			}
			got = append(got, d)
			if _, err := b.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{
				QueueUrl: aws.String(b.queueURL), ReceiptHandle: m.ReceiptHandle,
			}); err != nil {
				tb.Fatalf("delete message: %v", err)
			}
		}
	}
	return got
}

// mustDomainEvents builds n events the way the domain does.
func mustDomainEvents(tb testing.TB, n int) []attribution.Event {
	tb.Helper()
	events := make([]attribution.Event, n)
	for i := range events {
		seq := int64(i + 1)
		var detailType string
		var detail any
		if i%4 == 3 {
			detailType = attribution.EventMultiActorSuspected
			id := attribution.EventID(detailType, "identity-1", seq)
			detail = attribution.MultiActorSuspected{
				EventID: id, Sequence: seq, IdentityUUID: "identity-1", AttackerUUID: "att-c248",
				Primitives: []string{"motor.input_modality", "timing.keystroke"}, EvidenceSummary: "conflicting values",
				Confidence: 0.6, TS: 1714054175.367,
			}
		} else {
			detailType = attribution.EventStateChanged
			id := attribution.EventID(detailType, "identity-1|motor.input_modality", seq)
			detail = attribution.StateChanged{
				EventID: id, Sequence: seq, IdentityUUID: "identity-1", AttackerUUID: "att-c248",
				Primitive: "motor.input_modality", NewState: "stable", Confidence: 0.8,
				ObservationCount: i + 3, TS: 1714054175.367,
			}
		}
		raw, err := json.Marshal(detail)
		if err != nil {
			tb.Fatalf("marshal detail: %v", err)
		}
		var head struct {
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			tb.Fatal(err)
		}
		events[i] = attribution.Event{ID: head.EventID, DetailType: detailType, Position: seq, Detail: raw}
	}
	return events
}

func TestPublishThroughMoto(t *testing.T) {
	srv := awstest.Moto(t)
	ctx := context.Background()
	eb := newSDKClient(srv.Endpoint)
	sq := sqs.NewFromConfig(srv.Config())

	t.Run("23 events reach the queue", func(t *testing.T) {
		bus := mustRoutedBus(t, ctx, eb, sq, "attribution-23")
		pub, err := eventbus.New(eb, eventbus.Config{BusName: bus.name, Now: time.Now, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		events := mustDomainEvents(t, 23)
		if err := pub.Publish(ctx, events); err != nil {
			t.Fatalf("Publish() = %v", err)
		}
		checkDelivered(t, events, bus.mustReceive(t, ctx, len(events)))
	})

	t.Run("malformed detail rejected, the others delivered", func(t *testing.T) {
		bus := mustRoutedBus(t, ctx, eb, sq, "attribution-malformed")
		pub, err := eventbus.New(eb, eventbus.Config{BusName: bus.name, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		events := mustDomainEvents(t, 12)
		bad := events[4]
		bad.Detail = json.RawMessage(`{"event_id":`)
		events[4] = bad

		err = pub.Publish(ctx, events)
		var perr *attribution.PublishError
		if !errors.As(err, &perr) {
			t.Fatalf("Publish() = %v, want *attribution.PublishError", err)
		}
		if len(perr.Failed) != 1 || perr.Failed[0].Event.ID != bad.ID ||
			perr.Failed[0].Code != "MalformedDetail" || perr.Failed[0].Retryable {
			t.Fatalf("failed = %+v, want only %s as non-retryable MalformedDetail", perr.Failed, bad.ID)
		}
		good := append(append([]attribution.Event(nil), events[:4]...), events[5:]...)
		checkDelivered(t, good, bus.mustReceive(t, ctx, len(good)))
	})
}

// checkDelivered verifies that got holds each of events exactly once, intact.
func checkDelivered(tb testing.TB, events []attribution.Event, got []delivered) {
	tb.Helper()
	want := map[string]attribution.Event{}
	for _, ev := range events {
		want[ev.ID] = ev
	}
	seen := map[string]bool{}
	for _, d := range got {
		var head struct {
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal(d.Detail, &head); err != nil {
			tb.Fatalf("decode delivered detail %s: %v", d.Detail, err)
		}
		ev, ok := want[head.EventID]
		if !ok {
			tb.Errorf("unexpected event %s delivered", head.EventID)
			continue
		}
		if seen[head.EventID] {
			tb.Errorf("event %s delivered twice", head.EventID)
		}
		seen[head.EventID] = true
		if d.Source != attribution.EventSource || d.DetailType != ev.DetailType {
			tb.Errorf("event %s: source %q, detail type %q; want %q, %q",
				ev.ID, d.Source, d.DetailType, attribution.EventSource, ev.DetailType)
		}
		if !jsonEqual(tb, d.Detail, ev.Detail) {
			tb.Errorf("event %s detail = %s, want %s", ev.ID, d.Detail, ev.Detail)
		}
	}
	for id := range want {
		if !seen[id] {
			tb.Errorf("event %s never delivered", id)
		}
	}
	if len(got) != len(events) {
		tb.Errorf("%d events delivered, want %d", len(got), len(events))
	}
}

func jsonEqual(tb testing.TB, a, b []byte) bool {
	tb.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		tb.Fatalf("decode %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		tb.Fatalf("decode %s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}
