package templatetest_test

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Primitives of the built-in registry that are numeric; any other is
// categorical or hash and accepts any JSON value.
var numericPrimitives = map[string]bool{
	"toolchain.c2.beacon_interval_ms": true,
}

// mustFixtures decodes every events/*.json strictly (unknown fields are an
// error) into the type Lambda hands the handler, keyed by file name.
func mustFixtures(tb testing.TB) map[string]events.SQSEvent {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(mustRepoRoot(tb), "events", "*.json"))
	if err != nil {
		tb.Fatalf("list fixtures: %v", err)
	}
	if len(paths) == 0 {
		tb.Fatal("no fixtures in events/")
	}
	fixtures := make(map[string]events.SQSEvent, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatalf("read fixture: %v", err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		var ev events.SQSEvent
		if err := dec.Decode(&ev); err != nil {
			tb.Fatalf("decode %s as events.SQSEvent: %v", filepath.Base(p), err)
		}
		fixtures[filepath.Base(p)] = ev
	}
	return fixtures
}

// rejected reports whether a fixture is meant to contain at least one
// message the function must refuse.
func rejected(name string) bool {
	return strings.Contains(name, "invalid") || strings.Contains(name, "malformed")
}

func TestEventFixturesPresent(t *testing.T) {
	fixtures := mustFixtures(t)
	for _, name := range []string{
		"sqs-single-observation.json",
		"sqs-batch-ten-primitives.json",
		"sqs-redelivery.json",
		"sqs-batch-with-malformed.json",
		"sqs-eventbridge-wrapped.json",
		"sqs-sns-wrapped.json",
		"sqs-transition-sequence.json",
		"malformed-body-not-json.json",
		"invalid-numeric-string-value.json",
		"invalid-confidence-out-of-range.json",
		"invalid-ts-string.json",
		"invalid-missing-primitive.json",
	} {
		if _, ok := fixtures[name]; !ok {
			t.Errorf("missing fixture events/%s", name)
		}
	}
}

func TestEventFixturesAreSQSEvents(t *testing.T) {
	for name, ev := range mustFixtures(t) {
		t.Run(name, func(t *testing.T) {
			if len(ev.Records) == 0 {
				t.Fatal("no records")
			}
			if len(ev.Records) > 10 {
				t.Errorf("%d records; the default BatchSize is 10", len(ev.Records))
			}
			seen := map[string]bool{}
			for i, r := range ev.Records {
				if !uuidPattern.MatchString(r.MessageId) {
					t.Errorf("record %d: messageId %q is not a UUID", i, r.MessageId)
				}
				if seen[r.MessageId] {
					t.Errorf("record %d: messageId %s repeated within the batch", i, r.MessageId)
				}
				seen[r.MessageId] = true
				if r.ReceiptHandle == "" {
					t.Errorf("record %d: empty receiptHandle", i)
				}
				if r.Body == "" {
					t.Errorf("record %d: empty body", i)
				}
				if r.EventSource != "aws:sqs" {
					t.Errorf("record %d: eventSource %q, want aws:sqs", i, r.EventSource)
				}
				if sum := md5.Sum([]byte(r.Body)); r.Md5OfBody != hex.EncodeToString(sum[:]) {
					t.Errorf("record %d: md5OfBody %s does not match the body", i, r.Md5OfBody)
				}
				arn := strings.Split(r.EventSourceARN, ":")
				if len(arn) != 6 || arn[0] != "arn" || arn[2] != "sqs" || arn[3] != r.AWSRegion {
					t.Errorf("record %d: eventSourceARN %q does not name an SQS queue in %q", i, r.EventSourceARN, r.AWSRegion)
				}
				if n, err := strconv.Atoi(r.Attributes["ApproximateReceiveCount"]); err != nil || n < 1 {
					t.Errorf("record %d: ApproximateReceiveCount %q", i, r.Attributes["ApproximateReceiveCount"])
				}
				for _, attr := range []string{"SentTimestamp", "ApproximateFirstReceiveTimestamp"} {
					if _, err := strconv.ParseInt(r.Attributes[attr], 10, 64); err != nil {
						t.Errorf("record %d: %s %q: %v", i, attr, r.Attributes[attr], err)
					}
				}
			}
		})
	}
}

func TestEventFixtureBodies(t *testing.T) {
	for name, ev := range mustFixtures(t) {
		t.Run(name, func(t *testing.T) {
			var problems []string
			for i, r := range ev.Records {
				if _, err := observationOf(r.Body); err != nil {
					problems = append(problems, fmt.Sprintf("record %d (%s): %v", i, r.MessageId, err))
				}
			}
			switch {
			case rejected(name) && len(problems) == 0:
				t.Error("fixture is named as rejected but every message is a valid observation")
			case !rejected(name) && len(problems) > 0:
				t.Errorf("fixture is meant to be accepted:\n%s", strings.Join(problems, "\n"))
			}
			if name == "sqs-batch-with-malformed.json" && (len(problems) != 1 || len(ev.Records) != 4) {
				t.Errorf("want 4 records of which exactly 1 is rejected, got %d records and problems %v", len(ev.Records), problems)
			}
		})
	}
}

func TestBatchTenPrimitivesFixture(t *testing.T) {
	ev := mustFixtures(t)["sqs-batch-ten-primitives.json"]
	primitives := map[string]bool{}
	attackers := map[string]bool{}
	sessions := map[string]bool{}
	for _, r := range ev.Records {
		obs := mustObservation(t, r.Body)
		primitives[obs["primitive"].(string)] = true
		attackers[obs["attacker_uuid"].(string)] = true
		sessions[obs["evidence_ref"].(string)] = true
	}
	if len(ev.Records) != 10 || len(primitives) != 10 {
		t.Errorf("%d records over %d primitives, want 10 over 10", len(ev.Records), len(primitives))
	}
	if len(attackers) != 1 || len(sessions) != 1 {
		t.Errorf("attackers %v, sessions %v: want one of each", attackers, sessions)
	}
}

func TestRedeliveryFixture(t *testing.T) {
	fixtures := mustFixtures(t)
	first := fixtures["sqs-single-observation.json"].Records
	again := fixtures["sqs-redelivery.json"].Records
	if len(first) != 1 || len(again) != 1 {
		t.Fatalf("records: single %d, redelivery %d, want 1 and 1", len(first), len(again))
	}
	a, b := first[0], again[0]
	if a.MessageId != b.MessageId || a.Body != b.Body {
		t.Error("redelivery must carry the same messageId and body")
	}
	if a.ReceiptHandle == b.ReceiptHandle {
		t.Error("redelivery must carry a new receipt handle")
	}
	if a.Attributes["ApproximateReceiveCount"] != "1" || b.Attributes["ApproximateReceiveCount"] != "2" {
		t.Errorf("receive counts %s then %s, want 1 then 2",
			a.Attributes["ApproximateReceiveCount"], b.Attributes["ApproximateReceiveCount"])
	}
}

func TestTransitionSequenceFixture(t *testing.T) {
	ev := mustFixtures(t)["sqs-transition-sequence.json"]
	if len(ev.Records) != 6 {
		t.Fatalf("%d records, want 6", len(ev.Records))
	}
	var values []string
	prevTS := 0.0
	for i, r := range ev.Records {
		obs := mustObservation(t, r.Body)
		if obs["attacker_uuid"] != "att-3b9d" || obs["primitive"] != "motor.input_modality" {
			t.Errorf("record %d: %v/%v, want one attacker and one primitive", i, obs["attacker_uuid"], obs["primitive"])
		}
		ts := obs["ts"].(float64)
		if ts <= prevTS {
			t.Errorf("record %d: ts %v not after %v; the batch must be in series order", i, ts, prevTS)
		}
		prevTS = ts
		values = append(values, fmt.Sprint(obs["value"]))
	}
	// With the default thresholds the states are: unknown, unknown, stable
	// (3 of 3), conflicted (3 of 4, no alternation), stable (4 of 5),
	// multi_actor (t,t,p,t,p alternates: 3 flips, 1 repeat).
	want := []string{"typed", "typed", "typed", "pasted", "typed", "pasted"}
	if !slices.Equal(values, want) {
		t.Errorf("values %v, want %v", values, want)
	}
}

func TestWrappedFixtures(t *testing.T) {
	fixtures := mustFixtures(t)
	tests := []struct {
		name  string
		check func(top map[string]any) error
	}{
		{"sqs-eventbridge-wrapped.json", func(top map[string]any) error {
			for k, want := range map[string]string{"detail-type": "attacker.observation", "source": "decnet.behave", "version": "0"} {
				if top[k] != want {
					return fmt.Errorf("%s = %v, want %s", k, top[k], want)
				}
			}
			if _, ok := top["detail"].(map[string]any); !ok {
				return errors.New("detail is not an object")
			}
			return nil
		}},
		{"sqs-sns-wrapped.json", func(top map[string]any) error {
			if top["Type"] != "Notification" {
				return fmt.Errorf("Type = %v, want Notification", top["Type"])
			}
			if _, ok := top["Message"].(string); !ok {
				return errors.New("Message is not a JSON string")
			}
			if arn, _ := top["TopicArn"].(string); !strings.HasPrefix(arn, "arn:aws:sns:") {
				return fmt.Errorf("TopicArn %q", arn)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			records := fixtures[tt.name].Records
			if len(records) == 0 {
				t.Fatal("no records")
			}
			for _, r := range records {
				var top map[string]any
				if err := json.Unmarshal([]byte(r.Body), &top); err != nil {
					t.Fatalf("body: %v", err)
				}
				if err := tt.check(top); err != nil {
					t.Error(err)
				}
				mustObservation(t, r.Body)
			}
		})
	}
}

func mustObservation(tb testing.TB, body string) map[string]any {
	tb.Helper()
	obs, err := observationOf(body)
	if err != nil {
		tb.Fatalf("observation: %v", err)
	}
	return obs
}

// observationOf extracts the observation envelope of a message body, bare
// or wrapped by EventBridge (detail) or SNS (Message), and checks it.
func observationOf(body string) (map[string]any, error) {
	var top map[string]any
	if err := json.Unmarshal([]byte(body), &top); err != nil {
		return nil, fmt.Errorf("body is not a JSON object: %w", err)
	}
	obs := top
	switch {
	case top["detail-type"] != nil:
		d, ok := top["detail"].(map[string]any)
		if !ok {
			return nil, errors.New("EventBridge detail is not an object")
		}
		obs = d
	case top["Type"] == "Notification":
		msg, ok := top["Message"].(string)
		if !ok {
			return nil, errors.New("SNS Message is not a string")
		}
		if err := json.Unmarshal([]byte(msg), &obs); err != nil {
			return nil, fmt.Errorf("SNS Message is not a JSON object: %w", err)
		}
	}
	return obs, checkObservation(obs)
}

func checkObservation(obs map[string]any) error {
	for _, k := range []string{"id", "primitive", "source", "evidence_ref", "attacker_uuid"} {
		if s, _ := obs[k].(string); s == "" {
			return fmt.Errorf("%s: missing or not a non-empty string", k)
		}
	}
	for _, k := range []string{"ts", "confidence", "v"} {
		if _, ok := obs[k].(float64); !ok {
			return fmt.Errorf("%s: missing or not a number", k)
		}
	}
	if c := obs["confidence"].(float64); c < 0 || c > 1 {
		return fmt.Errorf("confidence %v outside [0, 1]", c)
	}
	window, ok := obs["window"].(map[string]any)
	if !ok {
		return errors.New("window: missing or not an object")
	}
	start, okStart := window["start_ts"].(float64)
	end, okEnd := window["end_ts"].(float64)
	if !okStart || !okEnd || start > end {
		return fmt.Errorf("window %v: want start_ts <= end_ts", window)
	}
	value, ok := obs["value"]
	if !ok {
		return errors.New("value: missing")
	}
	if numericPrimitives[obs["primitive"].(string)] {
		switch value.(type) {
		case float64, bool, nil:
		default:
			return fmt.Errorf("value %v of numeric primitive %s is not a number", value, obs["primitive"])
		}
	}
	return nil
}
