package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Limits of one SendMessageBatch call.
const (
	MaxBatchEntries = 10
	MaxBatchBytes   = 256 * 1024
	MaxMessageBytes = 256 * 1024
)

// Forwarder defaults.
const (
	DefaultLinger     = 50 * time.Millisecond
	DefaultMinBackoff = 200 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
)

// SendMessageBatchAPI is the part of the SQS client the forwarder uses.
type SendMessageBatchAPI interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

var _ SendMessageBatchAPI = (*sqs.Client)(nil)

// forwarder sends the spool's events to the observation queue, in spool
// order, and acknowledges them in the spool once SQS took every one.
type forwarder struct {
	spool      *Spool
	client     SendMessageBatchAPI
	queueURL   string
	linger     time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	log        *slog.Logger
	rejectPath string

	sent, failed, rejected atomic.Int64
	lastError              atomic.Value // string
}

// run forwards until ctx ends. Errors of the queue are retried with
// backoff for as long as it takes: an event leaves the spool only when SQS
// acknowledged it, or when SQS refused it as malformed (then it is written
// to the rejected file, logged and counted).
func (f *forwarder) run(ctx context.Context) error {
	for {
		entries, err := f.spool.Next(ctx, MaxBatchEntries, MaxBatchBytes)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(entries) < MaxBatchEntries && f.linger > 0 {
			if !sleep(ctx, f.linger) {
				return nil
			}
			more, err := f.spool.Poll(MaxBatchEntries-len(entries), MaxBatchBytes-batchBytes(entries))
			if err != nil {
				return err
			}
			entries = append(entries, more...)
		}
		if !f.send(ctx, entries) {
			return nil
		}
		if err := f.spool.Ack(entries); err != nil {
			return err
		}
	}
}

// drain sends what the spool holds now, until it is empty or ctx ends.
// It starts again from the first unacknowledged event: run may have left
// a batch unsent.
func (f *forwarder) drain(ctx context.Context) error {
	f.spool.rewind()
	for ctx.Err() == nil {
		entries, err := f.spool.Poll(MaxBatchEntries, MaxBatchBytes)
		if err != nil || len(entries) == 0 {
			return err
		}
		if !f.send(ctx, entries) {
			return ctx.Err()
		}
		if err := f.spool.Ack(entries); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func batchBytes(entries []Entry) int {
	n := 0
	for _, e := range entries {
		n += len(e.Data)
	}
	return n
}

// send delivers one batch; false when ctx ended first.
func (f *forwarder) send(ctx context.Context, entries []Entry) bool {
	pending := make(map[string]Entry, len(entries))
	for i, e := range entries {
		if reason := unsendable(e.Data); reason != "" {
			f.reject(e, "", reason)
			continue
		}
		pending["e"+strconv.Itoa(i)] = e
	}
	backoff := f.minBackoff
	for attempt := 1; len(pending) > 0; attempt++ {
		in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(f.queueURL)}
		for i := range entries {
			id := "e" + strconv.Itoa(i)
			if e, ok := pending[id]; ok {
				in.Entries = append(in.Entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(id), MessageBody: aws.String(string(e.Data))})
			}
		}
		out, err := f.client.SendMessageBatch(ctx, in)
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			f.failed.Add(int64(len(pending)))
			f.noteError(err.Error())
			if attempt == 1 || backoff >= f.maxBackoff {
				f.log.Warn("observation queue unreachable or failing; events stay in the spool and are retried", "events", len(pending), "attempt", attempt, "retry_in", backoff.String(), "error", err)
			}
		} else {
			for _, ok := range out.Successful {
				if _, known := pending[aws.ToString(ok.Id)]; known {
					delete(pending, aws.ToString(ok.Id))
					f.sent.Add(1)
				}
			}
			for _, bad := range out.Failed {
				id := aws.ToString(bad.Id)
				e, known := pending[id]
				if !known {
					continue
				}
				if bad.SenderFault {
					delete(pending, id)
					f.reject(e, aws.ToString(bad.Code), aws.ToString(bad.Message))
					continue
				}
				f.failed.Add(1)
				f.noteError(aws.ToString(bad.Code) + ": " + aws.ToString(bad.Message))
			}
			// Entries the response does not mention stay pending too.
		}
		if len(pending) == 0 {
			break
		}
		if !sleep(ctx, backoff/2+rand.N(backoff/2+1)) {
			return false
		}
		backoff = min(f.maxBackoff, backoff*2)
	}
	return true
}

func (f *forwarder) noteError(s string) { f.lastError.Store(s) }

// unsendable names what SQS would refuse in a body, before sending it.
func unsendable(body []byte) string {
	if len(body) > MaxMessageBytes {
		return fmt.Sprintf("event is %d bytes, more than the %d an SQS message holds", len(body), MaxMessageBytes)
	}
	if !utf8.Valid(body) {
		return "event is not valid UTF-8"
	}
	return ""
}

// reject records an event SQS will never take: it leaves the spool for
// the rejected file, with its reason, and is counted and logged.
func (f *forwarder) reject(e Entry, code, reason string) {
	f.rejected.Add(1)
	f.log.Error("event rejected by the observation queue; kept in the rejected file", "code", code, "reason", reason, "file", f.rejectPath, "bytes", len(e.Data))
	line, _ := json.Marshal(map[string]any{"rejected_at": time.Now().UTC().Format(time.RFC3339), "code": code, "reason": reason, "body": string(e.Data)})
	file, err := os.OpenFile(f.rejectPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err == nil {
		_, err = file.Write(append(line, '\n'))
		if err == nil {
			err = file.Sync()
		}
		if cerr := file.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		f.log.Error("could not write the rejected file", "file", f.rejectPath, "error", err)
	}
}

func rejectedPath(dir string) string { return filepath.Join(dir, "rejected.jsonl") }

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
