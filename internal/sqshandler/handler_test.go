package sqshandler_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/deadletter"
	"decnet-attribution/internal/memstore"
	"decnet-attribution/internal/sqshandler"
)

type recordingPublisher struct{ events []attribution.Event }

func (p *recordingPublisher) Publish(_ context.Context, evs []attribution.Event) error {
	p.events = append(p.events, evs...)
	return nil
}

type fakeDeadLetters struct {
	letters []deadletter.Letter
	fail    bool
}

func (d *fakeDeadLetters) Send(_ context.Context, letters []deadletter.Letter) ([]string, error) {
	if d.fail {
		ids := make([]string, len(letters))
		for i, l := range letters {
			ids[i] = l.MessageID
		}
		return ids, errors.New("queue unavailable")
	}
	d.letters = append(d.letters, letters...)
	return nil, nil
}

func body(tb testing.TB, fields map[string]any) string {
	tb.Helper()
	envelope := map[string]any{
		"id": "obs-1", "primitive": "motor.input_modality", "value": "typed", "confidence": 0.9,
		"window": map[string]any{"start_ts": 1764000000.0, "end_ts": 1764000030.0}, "source": "behave-shell",
		"evidence_ref": "shard:att-1#s001", "v": 1, "ts": 1764000030.0, "attacker_uuid": "att-1",
	}
	for k, v := range fields {
		if v == nil {
			delete(envelope, k)
			continue
		}
		envelope[k] = v
	}
	b, err := json.Marshal(envelope)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func newHandler(dlq sqshandler.DeadLetters, logs *bytes.Buffer) (*sqshandler.Handler, *recordingPublisher) {
	store := memstore.New()
	pub := &recordingPublisher{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	return &sqshandler.Handler{
		Processor: &attribution.Processor{
			Store: store, Identities: store, Publisher: pub,
			Registry: attribution.BuiltinRegistry(), Thresholds: attribution.DefaultThresholds(),
			Logger: logger,
		},
		DeadLetters: dlq,
		Logger:      logger,
	}, pub
}

func TestHandleReportsOnlyFailedMessages(t *testing.T) {
	event := events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "good-1", Body: body(t, nil)},
		{MessageId: "no-attacker", Body: body(t, map[string]any{"attacker_uuid": nil, "evidence_ref": "shard:att-1#s002"})},
		{MessageId: "good-2", Body: body(t, map[string]any{"evidence_ref": "shard:att-1#s003", "ts": 1764000100.0})},
		{MessageId: "not-json", Body: "{oops"},
	}}
	cases := []struct {
		name        string
		dlq         *fakeDeadLetters
		wantFailed  []string
		wantLetters []string
	}{
		{"without a dead-letter queue invalid messages fail until redriven", nil, []string{"no-attacker", "not-json"}, nil},
		{"with a dead-letter queue invalid messages go there at once", &fakeDeadLetters{}, nil, []string{"no-attacker", "not-json"}},
		{"when the dead-letter queue fails they fall back to redrive", &fakeDeadLetters{fail: true}, []string{"no-attacker", "not-json"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			var dlq sqshandler.DeadLetters
			if tc.dlq != nil {
				dlq = tc.dlq
			}
			h, pub := newHandler(dlq, &logs)
			resp, err := h.Handle(context.Background(), event)
			if err != nil {
				t.Fatal(err)
			}
			var failed []string
			for _, f := range resp.BatchItemFailures {
				failed = append(failed, f.ItemIdentifier)
			}
			if strings.Join(failed, ",") != strings.Join(tc.wantFailed, ",") {
				t.Errorf("failed = %v, want %v", failed, tc.wantFailed)
			}
			if tc.dlq != nil {
				var sent []string
				for _, l := range tc.dlq.letters {
					sent = append(sent, l.MessageID)
				}
				if strings.Join(sent, ",") != strings.Join(tc.wantLetters, ",") {
					t.Errorf("dead letters = %v, want %v", sent, tc.wantLetters)
				}
				for _, l := range tc.dlq.letters {
					if l.Reason == "" || l.Field == "" {
						t.Errorf("dead letter %s carries no reason: %+v", l.MessageID, l)
					}
				}
			}
			// The valid messages went through: one series, first transition.
			if len(pub.events) != 1 || pub.events[0].DetailType != attribution.EventStateChanged {
				t.Errorf("events = %+v, want one state_changed", pub.events)
			}
			for _, want := range []string{`"message_id":"no-attacker"`, `"field":"attacker_uuid"`, `"message_id":"not-json"`, `"field":"body"`} {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("logs lack %s:\n%s", want, logs.String())
				}
			}
		})
	}
}
