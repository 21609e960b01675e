package operator_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"decnet-attribution/internal/operator"
	"decnet-attribution/internal/testrig/devstack"
)

func TestSendDeliversValidLinesAndReportsBadOnes(t *testing.T) {
	t.Parallel()
	e := mustEnv(t)
	queue := e.stack.QueueURL(devstack.ObservationQueueID)
	valid := testStream(1, 6, 1) // 24 messages: three batches
	var in bytes.Buffer
	for i, b := range valid {
		in.Write(b)
		in.WriteString("\n")
		switch i {
		case 3:
			in.WriteString("primitive=motor.input_modality value=typed\n") // line 5
		case 7:
			in.WriteString("\n   \n") // blank lines are skipped, but counted as lines
		case 12:
			in.WriteString(`{"attacker_uuid":"att-0","evidence_ref":"r","ts":1,"value":1}` + "\n")
		case 20:
			in.WriteString(`{"attacker_uuid":"att-0","primitive":"toolchain.c2.beacon_interval_ms","evidence_ref":"r","ts":1,"value":"30s"}` + "\n")
		}
	}
	total := int64(in.Len())
	var progress []operator.SendProgress
	s := &operator.Sender{Client: e.sqs, QueueURL: queue, Progress: func(p operator.SendProgress) { progress = append(progress, p) }}
	res, err := s.Send(context.Background(), &in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Lines != 27 || res.Sent != 24 || len(res.Unsent) != 0 || res.Complete() {
		t.Fatalf("result %+v", res)
	}
	wantBad := []struct {
		line  int
		field string
	}{{5, "body"}, {17, "primitive"}, {26, "value"}}
	if len(res.Bad) != len(wantBad) {
		t.Fatalf("bad lines %+v, want lines 5, 17, 26", res.Bad)
	}
	for i, w := range wantBad {
		if b := res.Bad[i]; b.Line != w.line || b.Field != w.field || b.Reason == "" {
			t.Errorf("bad line %d: %+v, want line %d field %s", i, b, w.line, w.field)
		}
	}
	if last := progress[len(progress)-1]; last.Sent != 24 || last.Bad != 3 || last.BytesRead != total {
		t.Errorf("last progress %+v", last)
	}

	got := drainQueue(t, e.sqs, queue, func(s string) string { return s })
	want := make([]string, len(valid))
	for i, b := range valid {
		want[i] = string(b)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("queue holds %d messages, want the %d valid lines exactly", len(got), len(want))
	}
}

func TestSendToMissingQueue(t *testing.T) {
	t.Parallel()
	e := mustEnv(t)
	url := strings.Replace(e.stack.QueueURL(devstack.ObservationQueueID), "ObservationQueue", "NoSuchQueue", 1) + "-gone"
	s := &operator.Sender{Client: e.sqs, QueueURL: url}
	res, err := s.Send(context.Background(), bytes.NewReader(bytes.Join(testStream(1, 4, 1), []byte("\n"))))
	var missing *operator.MissingResourceError
	if !errors.As(err, &missing) || missing.Kind != "queue" || missing.Name != url {
		t.Fatalf("error %v, want a missing queue %s", err, url)
	}
	if res.Sent != 0 || len(res.Unsent) != 10 || res.Unsent[0].Line != 1 {
		t.Fatalf("result %+v: want the first batch reported unsent and nothing after it read", res)
	}
}

// fakeQueue answers SendMessageBatch from a script.
type fakeQueue struct {
	mu    sync.Mutex
	calls [][]string // entry IDs per call
	bytes []int
	// fail decides an entry's fate on a call: "" accepts it.
	fail func(id string, call int) (code string, senderFault bool)
}

func (f *fakeQueue) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	call := len(f.calls)
	var ids []string
	size := 0
	out := &sqs.SendMessageBatchOutput{}
	for _, e := range in.Entries {
		id := aws.ToString(e.Id)
		ids = append(ids, id)
		size += len(aws.ToString(e.MessageBody))
		code, sender := "", false
		if f.fail != nil {
			code, sender = f.fail(id, call)
		}
		switch code {
		case "":
			out.Successful = append(out.Successful, sqstypes.SendMessageBatchResultEntry{Id: e.Id})
		case "silent": // the response forgets the entry
		default:
			out.Failed = append(out.Failed, sqstypes.BatchResultErrorEntry{Id: e.Id, Code: aws.String(code), Message: aws.String(code + " happened"), SenderFault: sender})
		}
	}
	f.calls = append(f.calls, ids)
	f.bytes = append(f.bytes, size)
	return out, nil
}

func linesOf(n int) *bytes.Reader {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"attacker_uuid":"att-1","primitive":"motor.input_modality","evidence_ref":"r%d","ts":%d,"value":"%s"}`+"\n", i, i, strings.Repeat("x", 500))
	}
	return bytes.NewReader(b.Bytes())
}

func TestSendBatchLimits(t *testing.T) {
	for _, c := range []struct {
		name       string
		batchBytes int
		lines      int
		wantCalls  []int // entries per call
	}{
		{"ten per call", 0, 23, []int{10, 10, 3}},
		{"bytes per call", 2000, 7, []int{3, 3, 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := &fakeQueue{}
			s := &operator.Sender{Client: q, QueueURL: "q", BatchBytes: c.batchBytes}
			res, err := s.Send(context.Background(), linesOf(c.lines))
			if err != nil || !res.Complete() || res.Sent != c.lines {
				t.Fatalf("result %+v, error %v", res, err)
			}
			var sizes []int
			for i, ids := range q.calls {
				sizes = append(sizes, len(ids))
				if limit := c.batchBytes; limit > 0 && q.bytes[i] > limit {
					t.Errorf("call %d carries %d bytes, over %d", i, q.bytes[i], limit)
				}
			}
			if !slices.Equal(sizes, c.wantCalls) {
				t.Fatalf("entries per call %v, want %v", sizes, c.wantCalls)
			}
		})
	}
}

func TestSendRetriesWhatTheQueueFailed(t *testing.T) {
	q := &fakeQueue{fail: func(id string, call int) (string, bool) {
		switch id {
		case "line-2": // fails twice on the queue's side, then goes through
			if call < 2 {
				return "InternalError", false
			}
		case "line-4": // the sender's fault: never retried
			return "InvalidMessageContents", true
		case "line-6": // always fails on the queue's side
			return "ServiceUnavailable", false
		case "line-8": // forgotten by the first response
			if call == 0 {
				return "silent", false
			}
		}
		return "", false
	}}
	var slept []time.Duration
	s := &operator.Sender{Client: q, QueueURL: "q", MaxAttempts: 4,
		Sleep: func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }}
	res, err := s.Send(context.Background(), linesOf(9))
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 7 || len(res.Unsent) != 2 {
		t.Fatalf("result %+v", res)
	}
	if u := res.Unsent[0]; u.Line != 4 || u.Code != "InvalidMessageContents" || !strings.Contains(u.Reason, "rejected by the queue") {
		t.Errorf("unsent %+v", u)
	}
	if u := res.Unsent[1]; u.Line != 6 || u.Code != "ServiceUnavailable" || !strings.Contains(u.Reason, "4 times") {
		t.Errorf("unsent %+v", u)
	}
	if len(q.calls) != 4 || !slices.Equal(q.calls[1], []string{"line-2", "line-6", "line-8"}) || !slices.Equal(q.calls[3], []string{"line-6"}) {
		t.Fatalf("calls %v", q.calls)
	}
	if len(slept) != 3 {
		t.Fatalf("slept %v, want one backoff before each retry", slept)
	}
}

func TestSendRejectsWhatSQSCannotCarry(t *testing.T) {
	q := &fakeQueue{}
	body := `{"attacker_uuid":"att-1","primitive":"a.b","evidence_ref":"r","ts":1,"value":"` + "\xff" + `"}` + "\n" +
		`{"attacker_uuid":"att-1","primitive":"a.b","evidence_ref":"r","ts":1,"value":"` + "\uffff" + `"}` + "\n"
	res, err := (&operator.Sender{Client: q, QueueURL: "q"}).Send(context.Background(), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Bad) != 2 || res.Bad[0].Field != "body" || res.Bad[1].Field != "body" || len(q.calls) != 0 {
		t.Fatalf("result %+v, calls %v", res, q.calls)
	}
}

func TestSendStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	q := &fakeQueue{fail: func(string, int) (string, bool) { cancel(); return "", false }}
	res, err := (&operator.Sender{Client: q, QueueURL: "q"}).Send(ctx, linesOf(40))
	if !errors.Is(err, context.Canceled) || res.Sent != 10 || len(q.calls) != 1 || len(res.Unsent) != res.Lines-10 || res.Lines == 40 {
		t.Fatalf("result %+v, %d calls, error %v: want the first batch sent, the lines read since unsent", res, len(q.calls), err)
	}
}
