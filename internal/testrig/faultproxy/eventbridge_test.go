package faultproxy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"decnet-attribution/internal/testrig/faultproxy"
)

// eventRoute is an EventBridge rule on the default bus that routes events of
// one source to an SQS queue, set up directly on moto.
type eventRoute struct {
	source   string
	queueURL string
}

func mustEventRoute(tb testing.TB, direct clients) eventRoute {
	tb.Helper()
	ctx := testContext(tb)
	name := uniqueName("faultproxy-route")
	q, err := direct.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		tb.Fatalf("create queue %s: %v", name, err)
	}
	attrs, err := direct.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       q.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		tb.Fatalf("get ARN of queue %s: %v", name, err)
	}
	source := "faultproxy.test." + name
	pattern, _ := json.Marshal(map[string][]string{"source": {source}})
	if _, err := direct.eb.PutRule(ctx, &eventbridge.PutRuleInput{
		Name:         aws.String(name),
		EventPattern: aws.String(string(pattern)),
	}); err != nil {
		tb.Fatalf("put rule %s: %v", name, err)
	}
	if _, err := direct.eb.PutTargets(ctx, &eventbridge.PutTargetsInput{
		Rule: aws.String(name),
		Targets: []ebtypes.Target{{
			Id:  aws.String("queue"),
			Arn: aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]),
			// Only the detail is needed; moto evaluates each input path
			// slowly, and its default transformer has eight.
			InputTransformer: &ebtypes.InputTransformer{
				InputPathsMap: map[string]string{"detail": "$.detail"},
				InputTemplate: aws.String(`{"detail": <detail>}`),
			},
		}},
	}); err != nil {
		tb.Fatalf("put target on rule %s: %v", name, err)
	}
	return eventRoute{source: source, queueURL: *q.QueueUrl}
}

func (r eventRoute) entry(id string) ebtypes.PutEventsRequestEntry {
	detail, _ := json.Marshal(map[string]string{"id": id})
	return ebtypes.PutEventsRequestEntry{
		Source:     aws.String(r.source),
		DetailType: aws.String("faultproxy.test"),
		Detail:     aws.String(string(detail)),
	}
}

// drain receives every message on the route's queue and returns the ids in
// their event details, sorted.
func (r eventRoute) drain(tb testing.TB, direct clients) []string {
	tb.Helper()
	ctx := testContext(tb)
	var ids []string
	for {
		out, err := direct.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(r.queueURL),
			MaxNumberOfMessages: 10,
			VisibilityTimeout:   60,
		})
		if err != nil {
			tb.Fatalf("receive from %s: %v", r.queueURL, err)
		}
		if len(out.Messages) == 0 {
			break
		}
		for _, m := range out.Messages {
			var event struct {
				Detail struct {
					ID string `json:"id"`
				} `json:"detail"`
			}
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &event); err != nil || event.Detail.ID == "" {
				tb.Fatalf("queue message %q is not an event with a detail id: %v", aws.ToString(m.Body), err)
			}
			ids = append(ids, event.Detail.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

func TestPutEventsPartialFailuresDeliverExactlyTheSurvivors(t *testing.T) {
	moto := mustMoto(t)
	direct := newClients(moto, nil)

	tests := []struct {
		name           string
		rate           float64
		calls, perCall int  // at most 10 entries per call, the PutEvents limit
		wantSome       bool // both failed and delivered entries expected
	}{
		{name: "half the entries fail", rate: 0.5, calls: 2, perCall: 10, wantSome: true},
		{name: "every entry fails", rate: 1, calls: 2, perCall: 10},
		// Few entries: moto takes tens of milliseconds to deliver each one.
		{name: "no entry fails", rate: 0, calls: 1, perCall: 4},
	}
	eachRoute(t, func(t *testing.T, r route) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				route := mustEventRoute(t, direct)
				faults := mustInjector(t, 3, faultproxy.Rule{Service: faultproxy.EventBridge, Operation: "PutEvents", FailEntry: tt.rate})
				c := r.clients(t, moto, faults)
				ctx := testContext(t)

				calls, perCall := tt.calls, tt.perCall
				var reportedOK []string
				var failed, forwardedCalls int64
				for call := range calls {
					entries := make([]ebtypes.PutEventsRequestEntry, perCall)
					for i := range entries {
						entries[i] = route.entry(fmt.Sprintf("e-%02d", call*perCall+i))
					}
					out, err := c.eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: entries})
					if err != nil {
						t.Fatalf("PutEvents call %d: %v", call, err)
					}
					if len(out.Entries) != perCall {
						t.Fatalf("PutEvents call %d: %d result entries, want %d", call, len(out.Entries), perCall)
					}
					var callFailed int32
					for i, e := range out.Entries {
						id := fmt.Sprintf("e-%02d", call*perCall+i)
						switch {
						case e.ErrorCode != nil:
							callFailed++
							if *e.ErrorCode != "InternalFailure" || e.EventId != nil {
								t.Errorf("entry %s: failed result %+v, want InternalFailure without an event id", id, e)
							}
						case e.EventId == nil:
							t.Errorf("entry %s: neither an error nor an event id", id)
						default:
							reportedOK = append(reportedOK, id)
						}
					}
					if out.FailedEntryCount != callFailed {
						t.Errorf("PutEvents call %d: FailedEntryCount = %d, entries report %d failures", call, out.FailedEntryCount, callFailed)
					}
					failed += int64(callFailed)
					if int(callFailed) < perCall {
						forwardedCalls++
					}
				}

				delivered := route.drain(t, direct)
				if !slices.Equal(delivered, reportedOK) {
					t.Errorf("delivered %v,\nreported successful %v", delivered, reportedOK)
				}
				total := int64(calls * perCall)
				switch {
				case tt.rate == 1 && failed != total:
					t.Errorf("failed %d of %d entries at rate 1", failed, total)
				case tt.rate == 0 && failed != 0:
					t.Errorf("failed %d entries at rate 0", failed)
				case tt.wantSome && (failed == 0 || failed == total):
					t.Errorf("failed %d of %d entries; want some of each at rate %v", failed, total, tt.rate)
				}
				var wantFaults map[faultproxy.Fault]int64
				if failed > 0 {
					wantFaults = map[faultproxy.Fault]int64{faultproxy.FaultFailedEntry: failed}
				}
				wantCounts(t, "PutEvents", faults.Stats().ByOp[faultproxy.Op{Service: faultproxy.EventBridge, Name: "PutEvents"}], int64(calls), forwardedCalls, wantFaults)
			})
		}
	})
}

func TestPutEventsWholeCallFailures(t *testing.T) {
	moto := mustMoto(t)
	direct := newClients(moto, nil)

	tests := []struct {
		name    string
		rule    faultproxy.Rule
		fault   faultproxy.Fault
		wantErr func(error) bool
	}{
		{
			name:  "throttling",
			rule:  faultproxy.Rule{Service: faultproxy.EventBridge, Throttle: 1, FailEntry: 1},
			fault: faultproxy.FaultThrottle,
			wantErr: func(err error) bool {
				var e *ebtypes.ThrottlingException
				return errors.As(err, &e)
			},
		},
		{
			name:  "internal error",
			rule:  faultproxy.Rule{Service: faultproxy.EventBridge, Operation: "PutEvents", InternalError: 1},
			fault: faultproxy.FaultInternalError,
			wantErr: func(err error) bool {
				var e *ebtypes.InternalException
				return errors.As(err, &e)
			},
		},
	}
	eachRoute(t, func(t *testing.T, r route) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				route := mustEventRoute(t, direct)
				faults := mustInjector(t, 1, tt.rule)
				_, err := r.clients(t, moto, faults).eb.PutEvents(testContext(t), &eventbridge.PutEventsInput{
					Entries: []ebtypes.PutEventsRequestEntry{route.entry("only")},
				})
				if err == nil || !tt.wantErr(err) {
					t.Fatalf("PutEvents error = %T %v, want the injected %s", err, err, tt.fault)
				}
				if got := route.drain(t, direct); len(got) != 0 {
					t.Errorf("delivered %v despite a failed call", got)
				}
				wantCounts(t, "total", faults.Stats().Counts, 1, 0, map[faultproxy.Fault]int64{tt.fault: 1})
			})
		}
	})
}

func TestSQSThrottle(t *testing.T) {
	moto := mustMoto(t)
	direct := newClients(moto, nil)
	q, err := direct.sqs.CreateQueue(testContext(t), &sqs.CreateQueueInput{QueueName: aws.String(uniqueName("faultproxy-sqs"))})
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	eachRoute(t, func(t *testing.T, r route) {
		faults := mustInjector(t, 1, faultproxy.Rule{Service: faultproxy.SQS, Operation: "SendMessage", Throttle: 1})
		_, err := r.clients(t, moto, faults).sqs.SendMessage(testContext(t), &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String("x")})
		var throttled *sqstypes.RequestThrottled
		if !errors.As(err, &throttled) {
			t.Fatalf("SendMessage error = %T %v, want RequestThrottled", err, err)
		}
		wantCounts(t, "SendMessage", faults.Stats().ByOp[faultproxy.Op{Service: faultproxy.SQS, Name: "SendMessage"}], 1, 0, map[faultproxy.Fault]int64{faultproxy.FaultThrottle: 1})
	})
}
