package eventbus_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/smithy-go"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/eventbus"
)

const testBus = "attribution-test-bus"

// fakeBus is a PutEventsAPI that records every call and answers with
// respond (nil respond accepts everything).
type fakeBus struct {
	mu      sync.Mutex
	calls   [][]types.PutEventsRequestEntry
	options []eventbridge.Options
	respond func(call int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error)
}

func (f *fakeBus) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var o eventbridge.Options
	for _, fn := range optFns {
		fn(&o)
	}
	f.options = append(f.options, o)
	entries := append([]types.PutEventsRequestEntry(nil), in.Entries...)
	f.calls = append(f.calls, entries)
	if f.respond == nil {
		return rejectEntries(entries, nil), nil
	}
	return f.respond(len(f.calls)-1, entries)
}

// rejectEntries answers entries, rejecting those whose event ID is a key
// of codes with that code.
func rejectEntries(entries []types.PutEventsRequestEntry, codes map[string]string) *eventbridge.PutEventsOutput {
	out := &eventbridge.PutEventsOutput{}
	for _, e := range entries {
		id := detailEventID(e)
		if code, ok := codes[id]; ok {
			out.Entries = append(out.Entries, types.PutEventsResultEntry{
				ErrorCode:    aws.String(code),
				ErrorMessage: aws.String(messageFor(code, id)),
			})
			out.FailedEntryCount++
			continue
		}
		out.Entries = append(out.Entries, types.PutEventsResultEntry{EventId: aws.String("bus-" + id)})
	}
	return out
}

func messageFor(code, id string) string { return code + " for " + id }

// detailEventID reads event_id from an entry's detail.
func detailEventID(e types.PutEventsRequestEntry) string {
	var d struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal([]byte(aws.ToString(e.Detail)), &d); err != nil {
		return "unparsable:" + err.Error()
	}
	return d.EventID
}

// callIDs returns the event IDs of each recorded call.
func (f *fakeBus) callIDs() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([][]string, len(f.calls))
	for i, c := range f.calls {
		ids[i] = []string{}
		for _, e := range c {
			ids[i] = append(ids[i], detailEventID(e))
		}
	}
	return ids
}

type countingMetrics struct {
	mu                 sync.Mutex
	retries, permanent int
}

func (m *countingMetrics) AddPublishRetries(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.retries += n
}

func (m *countingMetrics) AddPermanentFailures(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.permanent += n
}

// harness wires a Publisher to a fakeBus with recorded sleeps, a fixed
// jitter, counted metrics and a JSON log.
type harness struct {
	bus     *fakeBus
	pub     *eventbus.Publisher
	sleeps  []time.Duration
	metrics *countingMetrics
	logs    *bytes.Buffer
}

func newHarness(tb testing.TB, bus *fakeBus, maxAttempts int) *harness {
	tb.Helper()
	h := &harness{bus: bus, metrics: &countingMetrics{}, logs: &bytes.Buffer{}}
	pub, err := eventbus.New(bus, eventbus.Config{
		BusName:     testBus,
		MaxAttempts: maxAttempts,
		BaseDelay:   100 * time.Millisecond,
		MaxDelay:    time.Second,
		Sleep: func(ctx context.Context, d time.Duration) error {
			h.sleeps = append(h.sleeps, d)
			return ctx.Err()
		},
		Rand:    func() float64 { return 0.5 },
		Logger:  slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: h.metrics,
	})
	if err != nil {
		tb.Fatalf("new publisher: %v", err)
	}
	h.pub = pub
	return h
}

// logRecords decodes the JSON log lines.
func (h *harness) logRecords(tb testing.TB) []map[string]any {
	tb.Helper()
	var recs []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(h.logs.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			tb.Fatalf("log line %q: %v", sc.Text(), err)
		}
		recs = append(recs, rec)
	}
	return recs
}

func eventID(i int) string { return fmt.Sprintf("evt-%02d", i) }

// mustEvents builds n events; detailBytes pads each detail to about that size.
func mustEvents(tb testing.TB, n, detailBytes int) []attribution.Event {
	tb.Helper()
	events := make([]attribution.Event, n)
	for i := range events {
		events[i] = mustEvent(tb, eventID(i), detailBytes)
	}
	return events
}

func mustEvent(tb testing.TB, id string, detailBytes int) attribution.Event {
	tb.Helper()
	detailType := attribution.EventStateChanged
	if strings.HasSuffix(id, "3") {
		detailType = attribution.EventMultiActorSuspected
	}
	detail, err := json.Marshal(map[string]any{"event_id": id, "pad": strings.Repeat("x", max(0, detailBytes-40))})
	if err != nil {
		tb.Fatalf("marshal detail: %v", err)
	}
	return attribution.Event{ID: id, DetailType: detailType, Position: 1, Detail: detail}
}

func ids(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, eventID(i))
	}
	return out
}

func pick(is ...int) []string {
	out := []string{}
	for _, i := range is {
		out = append(out, eventID(i))
	}
	return out
}

// failOnCall rejects, on the given call only, the listed events with code.
func failOnCall(call int, code string, is ...int) func(int, []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
	codes := map[string]string{}
	for _, i := range is {
		codes[eventID(i)] = code
	}
	return func(n int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
		if n == call {
			return rejectEntries(entries, codes), nil
		}
		return rejectEntries(entries, nil), nil
	}
}

// errOnCall fails the given call as a whole with err.
func errOnCall(call int, err error) func(int, []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
	return func(n int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
		if n == call {
			return nil, err
		}
		return rejectEntries(entries, nil), nil
	}
}

type wantFailure struct {
	id        int
	code      string
	retryable bool
}

func TestPublish(t *testing.T) {
	// 3 entries of about 100 KB fit no single 256 KB request; 2 do.
	const bigDetail = 100 * 1024
	throttled := &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded", Fault: smithy.FaultClient}
	serverFault := &smithy.GenericAPIError{Code: "InternalException", Message: "internal", Fault: smithy.FaultServer}
	connErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}

	tests := []struct {
		name        string
		events      []attribution.Event
		maxAttempts int
		respond     func(int, []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error)
		wantCalls   [][]string
		wantFailed  []wantFailure
		wantSleeps  []time.Duration
		wantRetries int
	}{
		{
			name:      "no events makes no call",
			events:    nil,
			wantCalls: [][]string{},
		},
		{
			name:      "25 events in calls of 10, 10 and 5, in order",
			events:    mustEvents(t, 25, 0),
			wantCalls: [][]string{ids(0, 10), ids(10, 20), ids(20, 25)},
		},
		{
			name:      "calls split at 256 KB",
			events:    mustEvents(t, 5, bigDetail),
			wantCalls: [][]string{ids(0, 2), ids(2, 4), ids(4, 5)},
		},
		{
			name: "entry over 256 KB alone is a permanent failure, the others are sent",
			events: []attribution.Event{
				mustEvent(t, eventID(0), 0),
				mustEvent(t, eventID(1), eventbus.MaxRequestBytes+1),
				mustEvent(t, eventID(2), 0),
			},
			wantCalls:  [][]string{pick(0, 2)},
			wantFailed: []wantFailure{{1, eventbus.CodeEntryTooLarge, false}},
		},
		{
			name:        "InternalFailure entries retried and accepted on the 2nd attempt",
			events:      mustEvents(t, 5, 0),
			respond:     failOnCall(0, "InternalFailure", 1, 3),
			wantCalls:   [][]string{ids(0, 5), pick(1, 3)},
			wantSleeps:  []time.Duration{50 * time.Millisecond},
			wantRetries: 2,
		},
		{
			name:        "ThrottlingException entries retried before the next call",
			events:      mustEvents(t, 12, 0),
			respond:     failOnCall(0, "ThrottlingException", 9),
			wantCalls:   [][]string{ids(0, 10), pick(9), ids(10, 12)},
			wantSleeps:  []time.Duration{50 * time.Millisecond},
			wantRetries: 1,
		},
		{
			name:        "throttled call retried whole",
			events:      mustEvents(t, 3, 0),
			respond:     errOnCall(0, throttled),
			wantCalls:   [][]string{ids(0, 3), ids(0, 3)},
			wantSleeps:  []time.Duration{50 * time.Millisecond},
			wantRetries: 3,
		},
		{
			name:        "server fault retried whole",
			events:      mustEvents(t, 2, 0),
			respond:     errOnCall(0, serverFault),
			wantCalls:   [][]string{ids(0, 2), ids(0, 2)},
			wantSleeps:  []time.Duration{50 * time.Millisecond},
			wantRetries: 2,
		},
		{
			name:        "connection error retried whole",
			events:      mustEvents(t, 2, 0),
			respond:     errOnCall(0, connErr),
			wantCalls:   [][]string{ids(0, 2), ids(0, 2)},
			wantSleeps:  []time.Duration{50 * time.Millisecond},
			wantRetries: 2,
		},
		{
			name:       "MalformedDetail is permanent, not retried, later events still sent",
			events:     mustEvents(t, 13, 0),
			respond:    failOnCall(0, "MalformedDetail", 1),
			wantCalls:  [][]string{ids(0, 10), ids(10, 13)},
			wantFailed: []wantFailure{{1, "MalformedDetail", false}},
		},
		{
			name:        "attempts exhausted leave the event retryable",
			events:      mustEvents(t, 2, 0),
			maxAttempts: 3,
			respond: func(_ int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
				return rejectEntries(entries, map[string]string{eventID(0): "InternalFailure"}), nil
			},
			wantCalls:   [][]string{ids(0, 2), pick(0), pick(0)},
			wantFailed:  []wantFailure{{0, "InternalFailure", true}},
			wantSleeps:  []time.Duration{50 * time.Millisecond, 100 * time.Millisecond},
			wantRetries: 2,
		},
		{
			name:        "backoff doubles up to the maximum delay",
			events:      mustEvents(t, 1, 0),
			maxAttempts: 7,
			respond: func(_ int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
				return rejectEntries(entries, map[string]string{eventID(0): "ThrottlingException"}), nil
			},
			wantCalls:  [][]string{pick(0), pick(0), pick(0), pick(0), pick(0), pick(0), pick(0)},
			wantFailed: []wantFailure{{0, "ThrottlingException", true}},
			wantSleeps: []time.Duration{
				50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
				400 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond,
			},
			wantRetries: 6,
		},
		{
			name:        "one attempt disables retries",
			events:      mustEvents(t, 2, 0),
			maxAttempts: 1,
			respond:     failOnCall(0, "InternalFailure", 1),
			wantCalls:   [][]string{ids(0, 2)},
			wantFailed:  []wantFailure{{1, "InternalFailure", true}},
		},
		{
			name: "failures reported in event order whatever the call",
			events: append(mustEvents(t, 11, 0),
				mustEvent(t, eventID(11), eventbus.MaxRequestBytes)),
			maxAttempts: 2,
			respond: func(n int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
				return rejectEntries(entries, map[string]string{
					eventID(2): "AccessDeniedException", eventID(5): "InternalFailure", eventID(10): "InvalidArgument",
				}), nil
			},
			wantCalls: [][]string{ids(0, 10), pick(5), pick(10)},
			wantFailed: []wantFailure{
				{2, "AccessDeniedException", false}, {5, "InternalFailure", true},
				{10, "InvalidArgument", false}, {11, eventbus.CodeEntryTooLarge, false},
			},
			wantSleeps:  []time.Duration{50 * time.Millisecond},
			wantRetries: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, &fakeBus{respond: tt.respond}, tt.maxAttempts)
			err := h.pub.Publish(context.Background(), tt.events)

			if got := h.bus.callIDs(); !reflect.DeepEqual(got, tt.wantCalls) {
				t.Errorf("calls:\n got %v\nwant %v", got, tt.wantCalls)
			}
			checkEntries(t, h.bus, tt.events)
			checkFailures(t, err, tt.events, tt.wantFailed)
			if !reflect.DeepEqual(h.sleeps, tt.wantSleeps) {
				t.Errorf("sleeps = %v, want %v", h.sleeps, tt.wantSleeps)
			}
			wantPermanent := 0
			for _, f := range tt.wantFailed {
				if !f.retryable {
					wantPermanent++
					checkPermanentLogged(t, h, tt.events[f.id], f.code)
				}
			}
			if h.metrics.retries != tt.wantRetries || h.metrics.permanent != wantPermanent {
				t.Errorf("metrics: retries %d, permanent %d; want %d, %d",
					h.metrics.retries, h.metrics.permanent, tt.wantRetries, wantPermanent)
			}
		})
	}
}

// checkEntries verifies every sent entry against the event it carries.
func checkEntries(tb testing.TB, bus *fakeBus, events []attribution.Event) {
	tb.Helper()
	byID := map[string]attribution.Event{}
	for _, ev := range events {
		byID[ev.ID] = ev
	}
	for i, call := range bus.calls {
		if len(call) > eventbus.MaxEntriesPerCall {
			tb.Errorf("call %d has %d entries", i, len(call))
		}
		size := 0
		for _, e := range call {
			size += eventbus.EntrySize(e)
			ev, ok := byID[detailEventID(e)]
			if !ok {
				tb.Errorf("call %d sent unknown entry %q", i, aws.ToString(e.Detail))
				continue
			}
			if aws.ToString(e.Source) != attribution.EventSource || aws.ToString(e.DetailType) != ev.DetailType ||
				aws.ToString(e.Detail) != string(ev.Detail) || aws.ToString(e.EventBusName) != testBus ||
				e.Resources != nil || e.Time != nil || e.TraceHeader != nil {
				tb.Errorf("call %d entry for %s = source %q, detail type %q, bus %q, resources %v, time %v; want %q, %q, %q, none, none",
					i, ev.ID, aws.ToString(e.Source), aws.ToString(e.DetailType), aws.ToString(e.EventBusName), e.Resources, e.Time,
					attribution.EventSource, ev.DetailType, testBus)
			}
		}
		if size > eventbus.MaxRequestBytes {
			tb.Errorf("call %d carries %d bytes, over %d", i, size, eventbus.MaxRequestBytes)
		}
	}
	for i, o := range bus.options {
		if o.RetryMaxAttempts != 1 {
			tb.Errorf("call %d: SDK retry max attempts = %d, want 1", i, o.RetryMaxAttempts)
		}
	}
}

func checkFailures(tb testing.TB, err error, events []attribution.Event, want []wantFailure) {
	tb.Helper()
	if len(want) == 0 {
		if err != nil {
			tb.Errorf("Publish() = %v, want nil", err)
		}
		return
	}
	var perr *attribution.PublishError
	if !errors.As(err, &perr) {
		tb.Fatalf("Publish() = %v, want *attribution.PublishError", err)
	}
	if len(perr.Failed) != len(want) {
		tb.Fatalf("failed = %+v, want %d failures %+v", perr.Failed, len(want), want)
	}
	for i, w := range want {
		got := perr.Failed[i]
		if got.Event.ID != events[w.id].ID || !reflect.DeepEqual(got.Event, events[w.id]) ||
			got.Code != w.code || got.Retryable != w.retryable || got.Message == "" {
			tb.Errorf("failure %d = {%s %q %q retryable=%v}, want {%s %q retryable=%v} with a message",
				i, got.Event.ID, got.Code, got.Message, got.Retryable, events[w.id].ID, w.code, w.retryable)
		}
		if w.code != eventbus.CodeEntryTooLarge && got.Message != messageFor(w.code, got.Event.ID) {
			tb.Errorf("failure %d message = %q, want the bus's %q", i, got.Message, messageFor(w.code, got.Event.ID))
		}
	}
}

func checkPermanentLogged(tb testing.TB, h *harness, ev attribution.Event, code string) {
	tb.Helper()
	for _, rec := range h.logRecords(tb) {
		if rec["level"] == "ERROR" && rec["event_id"] == ev.ID && rec["code"] == code && rec["message"] != "" {
			return
		}
	}
	tb.Errorf("no ERROR log with event_id %s and code %s in:\n%s", ev.ID, code, h.logs)
}

func TestPublishCallErrors(t *testing.T) {
	accessDenied := &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not allowed", Fault: smithy.FaultClient}
	throttled := &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded", Fault: smithy.FaultClient}

	tests := []struct {
		name      string
		events    int
		respond   func(int, []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error)
		wantCalls [][]string
		wantIs    error
	}{
		{
			name:      "non-retryable call error returned at once",
			events:    3,
			respond:   errOnCall(0, accessDenied),
			wantCalls: [][]string{ids(0, 3)},
			wantIs:    accessDenied,
		},
		{
			name:      "call error stops the later calls",
			events:    25,
			respond:   errOnCall(1, accessDenied),
			wantCalls: [][]string{ids(0, 10), ids(10, 20)},
			wantIs:    accessDenied,
		},
		{
			name:   "retryable call error after all attempts",
			events: 2,
			respond: func(int, []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
				return nil, throttled
			},
			wantCalls: [][]string{ids(0, 2), ids(0, 2), ids(0, 2)},
			wantIs:    throttled,
		},
		{
			name:   "fewer results than entries",
			events: 2,
			respond: func(_ int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
				return rejectEntries(entries[:1], nil), nil
			},
			wantCalls: [][]string{ids(0, 2)},
		},
		{
			name:   "failed count disagrees with the results",
			events: 2,
			respond: func(_ int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
				out := rejectEntries(entries, nil)
				out.FailedEntryCount = 1
				return out, nil
			},
			wantCalls: [][]string{ids(0, 2)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, &fakeBus{respond: tt.respond}, 3)
			err := h.pub.Publish(context.Background(), mustEvents(t, tt.events, 0))
			if err == nil {
				t.Fatal("Publish() = nil, want an error")
			}
			var perr *attribution.PublishError
			if errors.As(err, &perr) {
				t.Fatalf("Publish() = %v, want a plain error (outcome unknown)", err)
			}
			if !strings.HasPrefix(err.Error(), "put events") {
				t.Errorf("error %q lacks the put events context", err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantIs)
			}
			if got := h.bus.callIDs(); !reflect.DeepEqual(got, tt.wantCalls) {
				t.Errorf("calls:\n got %v\nwant %v", got, tt.wantCalls)
			}
			if h.metrics.permanent != 0 {
				t.Errorf("permanent failures counted: %d", h.metrics.permanent)
			}
		})
	}
}

func TestPublishStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bus := &fakeBus{respond: failOnCall(0, "InternalFailure", 0)}
	pub, err := eventbus.New(bus, eventbus.Config{
		BusName: testBus,
		Sleep: func(ctx context.Context, _ time.Duration) error {
			cancel()
			return ctx.Err()
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	err = pub.Publish(ctx, mustEvents(t, 12, 0))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish() = %v, want context.Canceled", err)
	}
	var perr *attribution.PublishError
	if errors.As(err, &perr) {
		t.Errorf("Publish() = %v, want a plain error", err)
	}
	if got := len(bus.calls); got != 1 {
		t.Errorf("%d calls, want 1", got)
	}
}

func TestPublishStampsTime(t *testing.T) {
	now := time.Date(2024, 4, 25, 14, 9, 35, 0, time.UTC)
	bus := &fakeBus{}
	pub, err := eventbus.New(bus, eventbus.Config{BusName: testBus, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), mustEvents(t, 3, 0)); err != nil {
		t.Fatal(err)
	}
	for _, e := range bus.calls[0] {
		if e.Time == nil || !e.Time.Equal(now) {
			t.Errorf("entry time = %v, want %v", e.Time, now)
		}
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		client  eventbus.PutEventsAPI
		cfg     eventbus.Config
		wantErr string
	}{
		{name: "valid", client: &fakeBus{}, cfg: eventbus.Config{BusName: "b"}},
		{name: "nil client", cfg: eventbus.Config{BusName: "b"}, wantErr: "nil client"},
		{name: "no bus", client: &fakeBus{}, wantErr: "empty bus name"},
		{name: "negative attempts", client: &fakeBus{}, cfg: eventbus.Config{BusName: "b", MaxAttempts: -1}, wantErr: "negative"},
		{
			name: "max delay below base", client: &fakeBus{},
			cfg:     eventbus.Config{BusName: "b", BaseDelay: time.Second, MaxDelay: time.Millisecond},
			wantErr: "below base delay",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, err := eventbus.New(tt.client, tt.cfg)
			if tt.wantErr == "" {
				if err != nil || pub == nil {
					t.Fatalf("New() = %v, %v", pub, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// eventOfEntrySize is an event whose entry (no Time set) is exactly size
// bytes as EventBridge counts them.
func eventOfEntrySize(tb testing.TB, id string, size int) attribution.Event {
	tb.Helper()
	ev := mustEvent(tb, id, 0)
	fixed := len(attribution.EventSource) + len(ev.DetailType) + len(`{"event_id":"","pad":""}`) + len(id)
	detail, err := json.Marshal(map[string]any{"event_id": id, "pad": strings.Repeat("x", size-fixed)})
	if err != nil {
		tb.Fatal(err)
	}
	ev.Detail = detail
	return ev
}

// TestPublishEntryMustBeBelow256KB: EventBridge requires an entry of less
// than 256 KB, so one of exactly 256 KB is refused before sending, and one
// byte less is sent alone.
func TestPublishEntryMustBeBelow256KB(t *testing.T) {
	at := eventOfEntrySize(t, eventID(0), 256*1024)
	below := eventOfEntrySize(t, eventID(1), 256*1024-1)
	for _, ev := range []attribution.Event{at, below} {
		e := types.PutEventsRequestEntry{Source: aws.String(attribution.EventSource), DetailType: aws.String(ev.DetailType), Detail: aws.String(string(ev.Detail))}
		if got := eventbus.EntrySize(e); got != 256*1024 && got != 256*1024-1 {
			t.Fatalf("test event %s has entry size %d", ev.ID, got)
		}
	}
	bus := &fakeBus{}
	h := newHarness(t, bus, 1)
	err := h.pub.Publish(context.Background(), []attribution.Event{at, below, mustEvent(t, eventID(2), 10)})
	checkFailures(t, err, []attribution.Event{at, below}, []wantFailure{{0, eventbus.CodeEntryTooLarge, false}})
	if got := bus.callIDs(); !reflect.DeepEqual(got, [][]string{pick(1), pick(2)}) {
		t.Fatalf("calls %v, want the entry just below the limit alone, then the small one", got)
	}
}
