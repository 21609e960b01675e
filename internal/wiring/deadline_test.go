package wiring_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"decnet-attribution/internal/config"
	"decnet-attribution/internal/wiring"
)

// stalledEndpoint is an AWS endpoint that accepts requests and never
// answers (until the test ends).
func stalledEndpoint(t *testing.T) aws.Config {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(srv.URL),
	}
}

func stalledHandlerEvent(n int) events.SQSEvent {
	var ev events.SQSEvent
	for i := range n {
		ev.Records = append(ev.Records, events.SQSMessage{
			MessageId: fmt.Sprintf("m-%d", i),
			Body:      fmt.Sprintf(`{"attacker_uuid":"att-%d","primitive":"motor.input_modality","value":"typed","evidence_ref":"r%d","ts":1}`, i, i),
		})
	}
	return ev
}

func mustConfig(t *testing.T) config.Config {
	t.Helper()
	env := map[string]string{"IDENTITIES_TABLE": "ids", "OBSERVATIONS_TABLE": "obs", "STATES_TABLE": "states", "EVENT_BUS_NAME": "bus"}
	cfg, err := config.FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func checkAllRetried(t *testing.T, ev events.SQSEvent, resp events.SQSEventResponse) {
	t.Helper()
	if len(resp.BatchItemFailures) != len(ev.Records) {
		t.Fatalf("%d of %d messages reported as failures; every unfinished message must be", len(resp.BatchItemFailures), len(ev.Records))
	}
}

// TestHandlerAnswersBeforeTheDeadline: with AWS stalled, the handler stops
// a headroom before the invocation's deadline and returns the partial batch
// response in time, every unfinished message in it.
func TestHandlerAnswersBeforeTheDeadline(t *testing.T) {
	h, err := wiring.New(mustConfig(t), stalledEndpoint(t), wiring.Options{CallTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h.Headroom = time.Second
	deadline := time.Now().Add(3 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	ev := stalledHandlerEvent(5)
	resp, err := h.Handle(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(deadline); left < h.Headroom/2 {
		t.Fatalf("handler returned %v before the deadline; want at least %v", left, h.Headroom/2)
	}
	checkAllRetried(t, ev, resp)
}

// TestAWSCallsAreBounded: without a deadline, a stalled call still ends
// after the call timeout instead of waiting for the server.
func TestAWSCallsAreBounded(t *testing.T) {
	h, err := wiring.New(mustConfig(t), stalledEndpoint(t), wiring.Options{
		CallTimeout:     200 * time.Millisecond,
		DynamoDBOptions: []func(*dynamodb.Options){func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 }},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan events.SQSEventResponse, 1)
	ev := stalledHandlerEvent(2)
	go func() {
		resp, _ := h.Handle(context.Background(), ev)
		done <- resp
	}()
	select {
	case resp := <-done:
		checkAllRetried(t, ev, resp)
	case <-time.After(10 * time.Second):
		t.Fatal("a stalled AWS call held the handler for 10 s")
	}
}
