package sqspoller_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"

	"decnet-attribution/internal/testrig/sqspoller"
)

// recorder is a FuncInvoker body that records every batch it is given.
type recorder struct {
	mu      sync.Mutex
	batches [][]events.SQSMessage
	handle  func(ctx context.Context, call int, ev events.SQSEvent) (events.SQSEventResponse, error)
}

func (r *recorder) Invoke(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	r.mu.Lock()
	r.batches = append(r.batches, slices.Clone(ev.Records))
	call := len(r.batches)
	r.mu.Unlock()
	return r.handle(ctx, call, ev)
}

func (r *recorder) snapshot() [][]events.SQSMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

func mustMapping(tb testing.TB, inv sqspoller.Invoker, cfg sqspoller.Config) *sqspoller.Mapping {
	tb.Helper()
	m, err := sqspoller.New(mustSQSClient(tb), inv, cfg)
	if err != nil {
		tb.Fatalf("new mapping: %v", err)
	}
	return m
}

func mustRunUntilDrained(tb testing.TB, m *sqspoller.Mapping, timeout time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := m.RunUntilDrained(ctx, 500*time.Millisecond); err != nil {
		tb.Fatalf("run until drained: %v (stats %+v)", err, m.Stats())
	}
}

func receiveCountOf(tb testing.TB, r events.SQSMessage) int {
	tb.Helper()
	n, err := strconv.Atoi(r.Attributes["ApproximateReceiveCount"])
	if err != nil {
		tb.Fatalf("record %s: ApproximateReceiveCount %q: %v", r.MessageId, r.Attributes["ApproximateReceiveCount"], err)
	}
	return n
}

func TestMappingPartialBatchFailures(t *testing.T) {
	t.Parallel()
	client := mustSQSClient(t)
	const maxReceiveCount = 3
	q := mustQueue(t, client, maxReceiveCount)
	ids := map[string]string{} // body -> message ID
	for i := range 3 {
		ids[fmt.Sprintf("ok-%d", i)] = mustSend(t, client, q.URL, fmt.Sprintf("ok-%d", i), "ok")
		ids[fmt.Sprintf("fail-%d", i)] = mustSend(t, client, q.URL, fmt.Sprintf("fail-%d", i), "fail")
	}

	rec := &recorder{handle: func(_ context.Context, _ int, ev events.SQSEvent) (events.SQSEventResponse, error) {
		var resp events.SQSEventResponse
		for _, r := range ev.Records {
			if aws.ToString(r.MessageAttributes["kind"].StringValue) == "fail" {
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
			}
		}
		return resp, nil
	}}
	m := mustMapping(t, rec, sqspoller.Config{QueueURL: q.URL, VisibilityTimeout: time.Second, WaitTimeSeconds: 2})
	mustRunUntilDrained(t, m, 30*time.Second)

	// Each record looks like the one Lambda delivers.
	counts := map[string][]int{} // body -> receive counts seen
	for _, batch := range rec.snapshot() {
		for _, r := range batch {
			counts[r.Body] = append(counts[r.Body], receiveCountOf(t, r))
			if r.MessageId != ids[r.Body] {
				t.Errorf("%s: messageId %q, want %q", r.Body, r.MessageId, ids[r.Body])
			}
			sum := md5.Sum([]byte(r.Body))
			if r.Md5OfBody != hex.EncodeToString(sum[:]) {
				t.Errorf("%s: md5OfBody %q", r.Body, r.Md5OfBody)
			}
			if r.EventSource != "aws:sqs" || r.EventSourceARN != q.ARN || r.AWSRegion != "us-east-1" {
				t.Errorf("%s: eventSource %q, eventSourceARN %q (want %q), awsRegion %q", r.Body, r.EventSource, r.EventSourceARN, q.ARN, r.AWSRegion)
			}
			if r.ReceiptHandle == "" || r.Md5OfMessageAttributes == "" {
				t.Errorf("%s: receiptHandle %q, md5OfMessageAttributes %q", r.Body, r.ReceiptHandle, r.Md5OfMessageAttributes)
			}
			for _, k := range []string{"ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} {
				if r.Attributes[k] == "" {
					t.Errorf("%s: attribute %s missing in %v", r.Body, k, r.Attributes)
				}
			}
			kind := r.MessageAttributes["kind"]
			if kind.DataType != "String" || kind.StringListValues == nil || kind.BinaryListValues == nil {
				t.Errorf("%s: message attribute kind = %+v", r.Body, kind)
			}
		}
	}
	for body := range ids {
		want := []int{1}
		if strings.HasPrefix(body, "fail") {
			want = []int{1, 2, 3}
		}
		got := slices.Sorted(slices.Values(counts[body]))
		if !slices.Equal(got, want) {
			t.Errorf("%s delivered with receive counts %v, want %v", body, got, want)
		}
	}

	if c := mustQueueCounts(t, client, q.URL); c != [3]int{} {
		t.Errorf("source queue counts = %v, want empty", c)
	}
	var dead []string
	for _, msg := range mustDrainAll(t, client, q.DLQURL) {
		body := aws.ToString(msg.Body)
		dead = append(dead, body)
		if aws.ToString(msg.MessageId) != ids[body] || aws.ToString(msg.MessageAttributes["kind"].StringValue) != "fail" {
			t.Errorf("DLQ message %s: ID %q, attributes %+v", body, aws.ToString(msg.MessageId), msg.MessageAttributes)
		}
	}
	slices.Sort(dead)
	if want := []string{"fail-0", "fail-1", "fail-2"}; !slices.Equal(dead, want) {
		t.Errorf("DLQ holds %v, want %v", dead, want)
	}

	want := sqspoller.Stats{Delivered: 3 + 3*maxReceiveCount, Redelivered: 3 * (maxReceiveCount - 1), Deleted: 3, Failed: 3 * maxReceiveCount, DeadLettered: 3}
	got := m.Stats()
	want.Batches = got.Batches // depends on how receives interleave with visibility expiry
	if got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
	if got.Batches < maxReceiveCount {
		t.Errorf("Batches = %d, want at least %d", got.Batches, maxReceiveCount)
	}
}

func TestMappingWholeBatchFailureRetriesEveryMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		first func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error)
	}{
		{"handler error", func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
			return events.SQSEventResponse{}, errors.New("store unavailable")
		}},
		{"handler panic", func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
			panic("nil map")
		}},
		{"invocation timeout", func(ctx context.Context, _ events.SQSEvent) (events.SQSEventResponse, error) {
			<-ctx.Done() // InvokeTimeout ends the invocation
			return events.SQSEventResponse{}, ctx.Err()
		}},
		{"unknown itemIdentifier", func(_ context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
			return events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{
				{ItemIdentifier: ev.Records[0].MessageId}, {ItemIdentifier: "not-in-this-batch"},
			}}, nil
		}},
		{"empty itemIdentifier", func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
			return events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{{}}}, nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := mustSQSClient(t)
			q := mustQueue(t, client, 0)
			var sent []string
			for i := range 4 {
				sent = append(sent, mustSend(t, client, q.URL, "m"+strconv.Itoa(i), "ok"))
			}
			slices.Sort(sent)
			rec := &recorder{handle: func(ctx context.Context, call int, ev events.SQSEvent) (events.SQSEventResponse, error) {
				if call == 1 {
					return tt.first(ctx, ev)
				}
				return events.SQSEventResponse{}, nil
			}}
			m := mustMapping(t, rec, sqspoller.Config{QueueURL: q.URL, WaitTimeSeconds: 2, InvokeTimeout: 300 * time.Millisecond})
			mustRunUntilDrained(t, m, 30*time.Second)

			batches := rec.snapshot()
			if len(batches) != 2 {
				t.Fatalf("%d invocations, want 2", len(batches))
			}
			for i, batch := range batches {
				var got []string
				for _, r := range batch {
					got = append(got, r.MessageId)
					if n := receiveCountOf(t, r); n != i+1 {
						t.Errorf("invocation %d: %s has receive count %d, want %d", i+1, r.MessageId, n, i+1)
					}
				}
				slices.Sort(got)
				if !slices.Equal(got, sent) {
					t.Errorf("invocation %d got %v, want every message %v", i+1, got, sent)
				}
			}
			want := sqspoller.Stats{Batches: 2, Delivered: 8, Redelivered: 4, Deleted: 4, BatchErrors: 1}
			if got := m.Stats(); got != want {
				t.Errorf("stats = %+v, want %+v", got, want)
			}
			if c := mustQueueCounts(t, client, q.URL); c != [3]int{} {
				t.Errorf("queue counts = %v, want empty", c)
			}
		})
	}
}

func TestMappingConcurrentPollers(t *testing.T) {
	t.Parallel()
	client := mustSQSClient(t)
	q := mustQueue(t, client, 5)
	const n = 40
	for i := range n {
		mustSend(t, client, q.URL, "m"+strconv.Itoa(i), "ok")
	}

	var (
		mu                sync.Mutex
		succeeded         = map[string]int{}
		successes         int64
		active, maxActive int
	)
	inv := sqspoller.FuncInvoker(func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		mu.Lock()
		active++
		maxActive = max(maxActive, active)
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		active--
		var resp events.SQSEventResponse
		for _, r := range ev.Records {
			i, _ := strconv.Atoi(strings.TrimPrefix(r.Body, "m"))
			// Every fourth message fails its first delivery.
			if i%4 == 0 && r.Attributes["ApproximateReceiveCount"] == "1" {
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
				continue
			}
			succeeded[r.Body]++
			successes++
		}
		return resp, nil
	})
	m := mustMapping(t, inv, sqspoller.Config{QueueURL: q.URL, BatchSize: 5, Pollers: 4, VisibilityTimeout: 2 * time.Second, WaitTimeSeconds: 2})
	mustRunUntilDrained(t, m, 30*time.Second)

	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		if body := "m" + strconv.Itoa(i); succeeded[body] < 1 {
			t.Errorf("%s never processed successfully", body)
		}
	}
	if maxActive < 2 {
		t.Errorf("at most %d invocations ran at once, want pollers working concurrently", maxActive)
	}
	st := m.Stats()
	if st.Deleted != successes || st.Failed != n/4 || st.BatchErrors != 0 || st.DeleteErrors != 0 || st.DeadLettered != 0 {
		t.Errorf("stats = %+v, want Deleted = %d successful processings, Failed = %d", st, successes, n/4)
	}
	if c := mustQueueCounts(t, client, q.URL); c != [3]int{} {
		t.Errorf("queue counts = %v, want empty", c)
	}
	if dead := mustDrainAll(t, client, q.DLQURL); len(dead) != 0 {
		t.Errorf("DLQ holds %d messages, want none", len(dead))
	}
}

func TestMappingBatching(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		messages    int
		cfg         sqspoller.Config
		wantSizes   []int // sizes of the invocations, sorted
		wantAtLeast time.Duration
	}{
		{"window gathers past ten per receive", 25, sqspoller.Config{BatchSize: 25, MaximumBatchingWindow: 2 * time.Second}, []int{25}, 0},
		{"window closes with a partial batch", 7, sqspoller.Config{BatchSize: 25, MaximumBatchingWindow: time.Second, VisibilityTimeout: 10 * time.Second}, []int{7}, 900 * time.Millisecond},
		{"batch size caps each receive", 7, sqspoller.Config{BatchSize: 3}, []int{1, 3, 3}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := mustSQSClient(t)
			q := mustQueue(t, client, 0)
			for i := range tt.messages {
				mustSend(t, client, q.URL, "m"+strconv.Itoa(i), "ok")
			}
			start := time.Now()
			var firstAt time.Duration
			rec := &recorder{handle: func(_ context.Context, call int, _ events.SQSEvent) (events.SQSEventResponse, error) {
				if call == 1 {
					firstAt = time.Since(start)
				}
				return events.SQSEventResponse{}, nil
			}}
			cfg := tt.cfg
			cfg.QueueURL, cfg.WaitTimeSeconds = q.URL, 1
			m := mustMapping(t, rec, cfg)
			mustRunUntilDrained(t, m, 30*time.Second)

			var sizes []int
			for _, b := range rec.snapshot() {
				sizes = append(sizes, len(b))
			}
			slices.Sort(sizes)
			if !slices.Equal(sizes, tt.wantSizes) {
				t.Errorf("invocation sizes %v, want %v", sizes, tt.wantSizes)
			}
			if firstAt < tt.wantAtLeast {
				t.Errorf("first invocation after %s, want the batching window (%s) to elapse", firstAt, tt.wantAtLeast)
			}
			if got := m.Stats().Deleted; got != int64(tt.messages) {
				t.Errorf("Deleted = %d, want %d", got, tt.messages)
			}
		})
	}
}

// A window longer than the visibility timeout sees the batch's messages
// again; each must still be delivered once, with its latest receipt.
func TestMappingWindowLongerThanVisibilityTimeout(t *testing.T) {
	t.Parallel()
	client := mustSQSClient(t)
	q := mustQueue(t, client, 0) // visibility timeout 1 s
	for i := range 3 {
		mustSend(t, client, q.URL, "m"+strconv.Itoa(i), "ok")
	}
	rec := &recorder{handle: func(context.Context, int, events.SQSEvent) (events.SQSEventResponse, error) {
		return events.SQSEventResponse{}, nil
	}}
	m := mustMapping(t, rec, sqspoller.Config{QueueURL: q.URL, BatchSize: 25, MaximumBatchingWindow: 2500 * time.Millisecond, WaitTimeSeconds: 1})
	mustRunUntilDrained(t, m, 30*time.Second)

	batches := rec.snapshot()
	if len(batches) != 1 || len(batches[0]) != 3 {
		t.Fatalf("invocations %v, want one of 3 records", batches)
	}
	for _, r := range batches[0] {
		if n := receiveCountOf(t, r); n < 2 {
			t.Errorf("%s: receive count %d, want the latest receive (>= 2)", r.Body, n)
		}
	}
	if st := m.Stats(); st.Deleted != 3 || st.Delivered != 3 || st.DeleteErrors != 0 {
		t.Errorf("stats = %+v, want 3 delivered and deleted", st)
	}
}

func TestRunUntilDrainedStopsAtDeadline(t *testing.T) {
	t.Parallel()
	client := mustSQSClient(t)
	q := mustQueue(t, client, 0)
	mustSend(t, client, q.URL, "poison", "fail")
	inv := sqspoller.FuncInvoker(func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
		return events.SQSEventResponse{}, errors.New("always fails")
	})
	m := mustMapping(t, inv, sqspoller.Config{QueueURL: q.URL, WaitTimeSeconds: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	err := m.RunUntilDrained(ctx, 200*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RunUntilDrained = %v, want context.DeadlineExceeded", err)
	}
	if st := m.Stats(); st.BatchErrors < 2 || st.Deleted != 0 {
		t.Errorf("stats = %+v, want repeated whole-batch errors and nothing deleted", st)
	}
}

func TestRunStopsOnCancelAndRejectsSecondRun(t *testing.T) {
	t.Parallel()
	client := mustSQSClient(t)
	q := mustQueue(t, client, 0)
	mustSend(t, client, q.URL, "held", "ok")
	entered, release := make(chan struct{}), make(chan struct{})
	inv := sqspoller.FuncInvoker(func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		close(entered)
		<-release
		return events.SQSEventResponse{}, nil
	})
	m := mustMapping(t, inv, sqspoller.Config{QueueURL: q.URL, WaitTimeSeconds: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("handler never invoked")
	}
	if err := m.Run(context.Background()); !errors.Is(err, sqspoller.ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
	// Cancelling while a batch is in the handler lets it finish and settle.
	cancel()
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if st := m.Stats(); st.Deleted != 1 {
		t.Errorf("Deleted = %d, want the in-flight message settled", st.Deleted)
	}
}

func TestRunFailsOnMissingQueue(t *testing.T) {
	t.Parallel()
	endpoint := mustMotoEndpoint(t)
	inv := sqspoller.FuncInvoker(func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
		return events.SQSEventResponse{}, nil
	})
	m := mustMapping(t, inv, sqspoller.Config{QueueURL: endpoint + "/123456789012/does-not-exist"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := m.RunUntilDrained(ctx, time.Second)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "does-not-exist") {
		t.Errorf("RunUntilDrained = %v, want a describe-queue error naming the queue", err)
	}
}

func TestMappingWithHTTPInvoker(t *testing.T) {
	t.Parallel()
	client := mustSQSClient(t)
	const maxReceiveCount = 2
	q := mustQueue(t, client, maxReceiveCount)
	okID := mustSend(t, client, q.URL, "ok-1", "ok")
	failID := mustSend(t, client, q.URL, "fail-1", "fail")

	var (
		mu    sync.Mutex
		calls int
	)
	srv := newEmulator(t, func(ev events.SQSEvent) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return 200, `{"errorMessage":"dial tcp: connection refused","errorType":"Runtime.ExitError"}`
		}
		var resp events.SQSEventResponse
		for _, r := range ev.Records {
			if r.Body == "fail-1" {
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
			}
		}
		b, _ := json.Marshal(resp)
		return 200, string(b)
	})
	inv := &sqspoller.HTTPInvoker{URL: sqspoller.InvocationURL(srv.URL, sqspoller.DefaultFunctionName)}
	m := mustMapping(t, inv, sqspoller.Config{QueueURL: q.URL, WaitTimeSeconds: 2})
	mustRunUntilDrained(t, m, 30*time.Second)

	want := sqspoller.Stats{Batches: 2, Delivered: 4, Redelivered: 2, Deleted: 1, Failed: 1, BatchErrors: 1, DeadLettered: 1}
	if got := m.Stats(); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
	dead := mustDrainAll(t, client, q.DLQURL)
	if len(dead) != 1 || aws.ToString(dead[0].MessageId) != failID {
		t.Errorf("DLQ holds %d messages, want only %s (not %s)", len(dead), failID, okID)
	}
}
