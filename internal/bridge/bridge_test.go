package bridge_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"decnet-attribution/internal/bridge"
	"decnet-attribution/internal/decnetbus"
	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/busrig"
	"decnet-attribution/internal/testrig/devstack"
	"decnet-attribution/internal/testrig/faultproxy"
)

func TestMain(m *testing.M) { awstest.Main(m) }

func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "br")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// receiveAll drains a queue (deleting what it reads) and returns the
// bodies.
func receiveAll(t *testing.T, client *sqs.Client, url string, want int, timeout time.Duration) []string {
	t.Helper()
	var out []string
	deadline := time.Now().Add(timeout)
	for len(out) < want && time.Now().Before(deadline) {
		res, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range res.Messages {
			out = append(out, aws.ToString(m.Body))
			if _, err := client.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

type runningBridge struct {
	b      *bridge.Bridge
	cancel context.CancelFunc
	done   chan error
}

func startBridge(t *testing.T, cfg bridge.Config) *runningBridge {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	b, err := bridge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rb := &runningBridge{b: b, cancel: cancel, done: make(chan error, 1)}
	go func() { rb.done <- b.Run(ctx) }()
	t.Cleanup(func() { rb.stop(t) })
	return rb
}

func (rb *runningBridge) stop(t *testing.T) {
	t.Helper()
	rb.cancel()
	if rb.done == nil {
		return
	}
	select {
	case err := <-rb.done:
		if err != nil {
			t.Errorf("bridge Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("bridge did not stop")
	}
	rb.done = nil
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// Observations published on the bus reach the observation queue as their
// bus envelopes, unchanged, after the queue was unreachable for a while;
// events on other topics are forwarded only with --forward.
func TestForwardsBusEnvelopesUnchanged(t *testing.T) {
	srv := awstest.Moto(t)
	stack := awstest.NewStack(t, srv)
	queue := stack.QueueURL(devstack.ObservationQueueID)
	faults, err := faultproxy.New(faultproxy.Config{Rules: []faultproxy.Rule{{Service: faultproxy.SQS, DropBeforeForward: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	bridgeCfg := srv.Config()
	bridgeCfg.HTTPClient = faults.Client()
	bridgeCfg.RetryMaxAttempts = 1

	dir := shortDir(t)
	socket := filepath.Join(dir, "bus.sock")
	bus, err := busrig.Listen(socket, busrig.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	rb := startBridge(t, bridge.Config{
		SpoolDir: filepath.Join(dir, "spool"), BusSocket: socket, Forward: []string{"identity.>"},
		QueueURL: queue, SQS: sqs.NewFromConfig(bridgeCfg),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, SummaryInterval: 100 * time.Millisecond,
	})
	waitFor(t, 10*time.Second, "bridge subscribed", func() bool { return bus.Subscribers("identity.formed") == 1 })

	// What the bridge receives is what the bus server stamped: capture it
	// with a subscriber of our own.
	var mu sync.Mutex
	var seen []string
	spy := &decnetbus.Client{Path: socket, Patterns: []string{">"}}
	spyCtx, stopSpy := context.WithCancel(context.Background())
	defer stopSpy()
	go func() {
		_ = spy.Run(spyCtx, func(ev decnetbus.Event) { mu.Lock(); seen = append(seen, string(ev.Body)); mu.Unlock() })
	}()
	waitFor(t, 10*time.Second, "spy subscribed", func() bool { return bus.Subscribers("identity.formed") == 2 })

	obs := busrig.ObservationStream(7, 45, 5)
	for _, b := range obs {
		topic, _ := busrig.ObservationTopic(b)
		if err := bus.Publish(topic, "observation", b); err != nil {
			t.Fatal(err)
		}
	}
	_ = bus.Publish("identity.formed", "identity.formed", json.RawMessage(`{"identity_uuid":"i-1"}`))
	_ = bus.Publish("attacker.observed", "", json.RawMessage(`{"ip":"10.0.0.1"}`)) // not subscribed
	total := len(obs) + 1
	waitFor(t, 10*time.Second, "events spooled", func() bool { return rb.b.Stats().Spooled == int64(total) })
	time.Sleep(300 * time.Millisecond) // the queue is still unreachable
	if st := rb.b.Stats(); st.Sent != 0 || st.Failed == 0 || st.SpoolDepth != int64(total) {
		t.Fatalf("while the queue is unreachable: %+v", st)
	}

	_ = faults.SetRules()
	got := receiveAll(t, sqs.NewFromConfig(srv.Config()), queue, total, 30*time.Second)
	waitFor(t, 10*time.Second, "spool empty", func() bool { return rb.b.Stats().SpoolDepth == 0 })
	rb.stop(t)

	mu.Lock()
	want := slices.Clone(seen)
	mu.Unlock()
	want = slices.DeleteFunc(want, func(s string) bool { return json.Valid([]byte(s)) && topicOf(s) == "attacker.observed" })
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("queue holds %d messages, want the %d bus envelopes unchanged\n got %.300v\nwant %.300v", len(got), len(want), got, want)
	}
	st := rb.b.Stats()
	if st.Sent != int64(total) || st.Received != int64(total) || st.Refused != 0 || st.Rejected != 0 {
		t.Errorf("stats %+v", st)
	}
}

func topicOf(body string) string {
	var env struct {
		Topic string `json:"topic"`
	}
	_ = json.Unmarshal([]byte(body), &env)
	return env.Topic
}

// The service's events come back onto the bus with DECNET's topics and
// payload fields, once per event_id, and leave the queue only after the
// bus took them.
func TestPublishBack(t *testing.T) {
	srv := awstest.Moto(t)
	stack := awstest.NewStack(t, srv, awstest.WithParameters(map[string]string{"PublishBackToDecnet": "true"}))
	backQueue := stack.QueueURL(devstack.PublishBackQueueID)
	if backQueue == "" {
		t.Fatal("stack has no publish-back queue")
	}
	cfg := srv.Config()
	dir := shortDir(t)
	socket := filepath.Join(dir, "bus.sock")
	rbCfg := bridge.Config{
		SpoolDir: filepath.Join(dir, "spool"), BusSocket: socket,
		QueueURL: stack.QueueURL(devstack.ObservationQueueID), SQS: sqs.NewFromConfig(cfg),
		PublishBackQueueURL: backQueue, PublishBackSQS: sqs.NewFromConfig(cfg), PublishBackWait: time.Second,
		BusMinBackoff: 20 * time.Millisecond, BusMaxBackoff: 100 * time.Millisecond,
	}

	// The bus is down at first: nothing may leave the queue.
	rb := startBridge(t, rbCfg)
	put := func(detailType, detail string) {
		t.Helper()
		out, err := eventbridge.NewFromConfig(cfg).PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
			EventBusName: aws.String(stack.BusName(devstack.AttributionBusID)), Source: aws.String("decnet.attribution"),
			DetailType: aws.String(detailType), Detail: aws.String(detail),
		}}})
		if err != nil || out.FailedEntryCount > 0 {
			t.Fatalf("put event: %v %+v", err, out)
		}
	}
	changed := `{"event_id":"ev-1","sequence":2,"identity_uuid":"id-1","attacker_uuid":"att-1","primitive":"motor.input_modality","old_state":"stable","new_state":"multi_actor","current_value":"pasted","confidence":0.6,"observation_count":6,"ts":1764000300.5}`
	suspected := `{"event_id":"ev-2","sequence":1,"identity_uuid":"id-1","attacker_uuid":"att-1","primitives":["a.b","c.d"],"evidence_summary":"2 primitives flagged multi_actor","confidence":0.6,"ts":1764000301}`
	put("attribution.profile.state_changed", changed)
	put("attribution.profile.state_changed", changed) // EventBridge's own repeat
	put("attribution.profile.multi_actor_suspected", suspected)
	time.Sleep(1500 * time.Millisecond)
	attrs, err := sqs.NewFromConfig(cfg).GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(backQueue), AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages"}})
	if err != nil {
		t.Fatal(err)
	}
	if n := attrs.Attributes["ApproximateNumberOfMessages"]; n != "3" {
		t.Fatalf("with the bus down the queue holds %s messages, want all 3", n)
	}

	bus, err := busrig.Listen(socket, busrig.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	var mu sync.Mutex
	var got []decnetbus.Envelope
	sub := &decnetbus.Client{Path: socket, Patterns: []string{"attribution.>"}}
	subCtx, stopSub := context.WithCancel(context.Background())
	defer stopSub()
	go func() {
		_ = sub.Run(subCtx, func(ev decnetbus.Event) {
			var env decnetbus.Envelope
			_ = json.Unmarshal(ev.Body, &env)
			mu.Lock()
			got = append(got, env)
			mu.Unlock()
		})
	}()
	waitFor(t, 10*time.Second, "subscriber", func() bool { return bus.Subscribers("attribution.x") == 1 })
	waitFor(t, 30*time.Second, "published back", func() bool { st := rb.b.Stats(); return st.Published+st.DuplicateBack == 3 })
	rb.stop(t)

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("bus got %d events, want 2 (one per event_id): %+v", len(got), got)
	}
	slices.SortFunc(got, func(a, b decnetbus.Envelope) int { return len(a.Topic) - len(b.Topic) })
	wantPayloads := []struct{ topic, typ, payload string }{
		{"attribution.profile.state_changed", "profile.state_changed",
			`{"identity_uuid":"id-1","primitive":"motor.input_modality","old_state":"stable","new_state":"multi_actor","current_value":"pasted","confidence":0.6,"observation_count":6,"ts":1764000300.5,"event_id":"ev-1","sequence":2}`},
		{"attribution.profile.multi_actor_suspected", "profile.multi_actor_suspected",
			`{"identity_uuid":"id-1","primitives":["a.b","c.d"],"evidence_summary":"2 primitives flagged multi_actor","confidence":0.6,"ts":1764000301,"event_id":"ev-2","sequence":1}`},
	}
	for i, w := range wantPayloads {
		if got[i].Topic != w.topic || got[i].Type != w.typ || string(got[i].Payload) != w.payload {
			t.Errorf("event %d: %s %s %s\nwant %s %s %s", i, got[i].Topic, got[i].Type, got[i].Payload, w.topic, w.typ, w.payload)
		}
	}
	left := receiveAll(t, sqs.NewFromConfig(cfg), backQueue, 1, 2*time.Second)
	if len(left) != 0 {
		t.Errorf("publish-back queue still holds %d messages", len(left))
	}

	// After a restart, the ids are remembered: a repeat is not published.
	put("attribution.profile.state_changed", changed)
	rb = startBridge(t, rbCfg)
	waitFor(t, 30*time.Second, "repeat recognised", func() bool { return rb.b.Stats().DuplicateBack == 1 })
	rb.stop(t)
	if len(got) != 2 {
		t.Errorf("a remembered event_id was published again after a restart")
	}
}
