package bridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// Topics and types DECNET's own attribution worker published.
const (
	TopicStateChanged        = "attribution.profile.state_changed"
	TopicMultiActorSuspected = "attribution.profile.multi_actor_suspected"
)

// DefaultSeenIDs is how many published event ids the bridge remembers.
const DefaultSeenIDs = 100_000

// ReceiveDeleteAPI is the part of the SQS client publish-back uses.
type ReceiveDeleteAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
}

var _ ReceiveDeleteAPI = (*sqs.Client)(nil)

// busPublisher is what publish-back needs of the bus client.
type busPublisher interface {
	Connected() bool
	Publish(topic, typ string, payload json.RawMessage) error
}

// Payload fields of the two events on DECNET's bus: the fields DECNET's
// own worker published, plus event_id and sequence.
var (
	stateChangedFields = []string{"identity_uuid", "primitive", "old_state", "new_state", "current_value", "confidence", "observation_count", "ts", "event_id", "sequence"}
	suspectedFields    = []string{"identity_uuid", "primitives", "evidence_summary", "confidence", "ts", "event_id", "sequence"}
)

// busEvent translates an EventBridge event, as an SQS target of a rule
// receives it, into DECNET's topic, type and payload, and its event_id.
func busEvent(body []byte) (topic, typ string, payload json.RawMessage, eventID string, err error) {
	var ev struct {
		Source     string                     `json:"source"`
		DetailType string                     `json:"detail-type"`
		Detail     map[string]json.RawMessage `json:"detail"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return "", "", nil, "", fmt.Errorf("not an EventBridge event: %v", err)
	}
	var fields []string
	switch ev.DetailType {
	case TopicStateChanged:
		fields = stateChangedFields
	case TopicMultiActorSuspected:
		fields = suspectedFields
	default:
		return "", "", nil, "", fmt.Errorf("detail-type %q is not an attribution event", ev.DetailType)
	}
	if ev.Detail == nil {
		return "", "", nil, "", errors.New("detail: missing")
	}
	if err := json.Unmarshal(ev.Detail["event_id"], &eventID); err != nil || eventID == "" {
		return "", "", nil, "", errors.New("detail.event_id: missing or not a string")
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range fields {
		v, ok := ev.Detail[k]
		if !ok {
			return "", "", nil, "", fmt.Errorf("detail.%s: missing", k)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		key, _ := json.Marshal(k)
		b.Write(key)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return ev.DetailType, strings.TrimPrefix(ev.DetailType, "attribution."), b.Bytes(), eventID, nil
}

// publishBack moves the service's events from a queue onto DECNET's bus.
type publishBack struct {
	client   ReceiveDeleteAPI
	queueURL string
	bus      busPublisher
	seen     *seenIDs
	wait     int32 // ReceiveMessage long-poll seconds
	log      *slog.Logger

	published, duplicates, invalid, failed atomic.Int64
}

func (p *publishBack) run(ctx context.Context) error {
	for ctx.Err() == nil {
		if !p.bus.Connected() {
			if !sleep(ctx, 200*time.Millisecond) {
				return nil
			}
			continue
		}
		out, err := p.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(p.queueURL),
			MaxNumberOfMessages: 10,
			WaitTimeSeconds:     p.wait,
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.failed.Add(1)
			p.log.Warn("publish-back queue: receive failed; retrying", "error", err)
			if !sleep(ctx, 2*time.Second) {
				return nil
			}
			continue
		}
		var done []string // receipt handles to delete
		for _, m := range out.Messages {
			topic, typ, payload, id, err := busEvent([]byte(aws.ToString(m.Body)))
			if err != nil {
				// Left in the queue: its redrive policy moves it to the
				// dead-letter queue, where an operator sees it.
				p.invalid.Add(1)
				p.log.Error("publish-back: not an attribution event; left for the dead-letter queue", "message_id", aws.ToString(m.MessageId), "reason", err.Error())
				continue
			}
			if p.seen.has(id) {
				p.duplicates.Add(1)
				done = append(done, aws.ToString(m.ReceiptHandle))
				continue
			}
			if err := p.bus.Publish(topic, typ, payload); err != nil {
				// Not deleted: the queue delivers it again.
				p.failed.Add(1)
				p.log.Warn("publish-back: the bus did not take an event; the queue will deliver it again", "event_id", id, "error", err)
				break
			}
			p.seen.add(id)
			p.published.Add(1)
			done = append(done, aws.ToString(m.ReceiptHandle))
		}
		if err := p.seen.sync(); err != nil {
			p.log.Warn("publish-back: could not record published event ids", "error", err)
		}
		for _, h := range done {
			if _, err := p.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(p.queueURL), ReceiptHandle: aws.String(h)}); err != nil && ctx.Err() == nil {
				p.log.Warn("publish-back: delete failed; the event comes back and is recognised as published", "error", err)
			}
		}
	}
	return nil
}

// seenIDs remembers the last n published event ids, in memory and in a
// file beside the spool, so a restart does not publish them again.
type seenIDs struct {
	n     int
	ids   map[string]bool
	order []string // ring, oldest at head
	head  int
	path  string
	f     *os.File
	lines int
}

func openSeenIDs(dir string, n int) (*seenIDs, error) {
	if n <= 0 {
		n = DefaultSeenIDs
	}
	s := &seenIDs{n: n, ids: map[string]bool{}, path: filepath.Join(dir, "published-ids")}
	if f, err := os.Open(s.path); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if id := strings.TrimSpace(sc.Text()); id != "" {
				s.remember(id)
				s.lines++
			}
		}
		f.Close()
	}
	if err := s.compact(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *seenIDs) has(id string) bool { return s.ids[id] }

func (s *seenIDs) remember(id string) {
	if s.ids[id] {
		return
	}
	if len(s.order) < s.n {
		s.order = append(s.order, id)
	} else {
		delete(s.ids, s.order[s.head])
		s.order[s.head] = id
		s.head = (s.head + 1) % s.n
	}
	s.ids[id] = true
}

func (s *seenIDs) add(id string) {
	s.remember(id)
	if s.f != nil {
		fmt.Fprintln(s.f, id)
		s.lines++
	}
}

// sync makes the ids added so far durable, compacting the file when it
// holds twice what is remembered.
func (s *seenIDs) sync() error {
	if s.lines > 2*s.n {
		return s.compact()
	}
	if s.f == nil {
		return nil
	}
	return s.f.Sync()
}

func (s *seenIDs) compact() error {
	if s.f != nil {
		s.f.Close()
	}
	tmp := s.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := range s.order {
		fmt.Fprintln(w, s.order[(s.head+i)%len(s.order)])
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	f.Close()
	if err := os.Rename(tmp, s.path); err != nil {
		return err
	}
	s.lines = len(s.order)
	s.f, err = os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o640)
	return err
}

func (s *seenIDs) close() {
	if s.f != nil {
		_ = s.f.Sync()
		s.f.Close()
	}
}
