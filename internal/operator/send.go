package operator

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/backoff"
)

// Limits of one SendMessageBatch call.
const (
	// MaxBatchEntries is the most messages one call takes.
	MaxBatchEntries = 10
	// MaxBatchBytes is the most payload (the bodies together) one call takes.
	MaxBatchBytes = 256 * 1024
)

// Defaults of Sender.
const (
	DefaultSendAttempts = 5
	DefaultBaseDelay    = 100 * time.Millisecond
	DefaultMaxDelay     = 5 * time.Second
)

// SendMessageBatchAPI is the part of the SQS client the Sender uses;
// *sqs.Client satisfies it.
type SendMessageBatchAPI interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

var _ SendMessageBatchAPI = (*sqs.Client)(nil)

// Sender sends observation messages, one per line, to the observation
// queue.
type Sender struct {
	Client   SendMessageBatchAPI
	QueueURL string
	// Registry gives the primitives' kinds for the check the function makes
	// on values (a numeric primitive's value must be a number, a bool or
	// null). Nil means the built-in registry.
	Registry attribution.Registry
	// BatchBytes bounds the bodies of one call together; zero (or more
	// than MaxBatchBytes) means MaxBatchBytes.
	BatchBytes int
	// MaxAttempts bounds the calls made for one entry that the queue
	// failed without blaming the sender. Zero means DefaultSendAttempts.
	MaxAttempts int
	// BaseDelay and MaxDelay shape the backoff between attempts: a random
	// duration below min(MaxDelay, BaseDelay×2^(n-1)) before retry n.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// Sleep waits (injectable for tests); nil means a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Progress, when set, is called as lines are read and batches sent.
	Progress func(SendProgress)
}

// SendProgress is where a Send stands.
type SendProgress struct {
	BytesRead int64
	Lines     int // non-blank lines read
	Sent      int
	Bad       int
	Unsent    int
}

// LineProblem is one line that was not sent.
type LineProblem struct {
	Line int `json:"line"`
	// Field is the field the problem concerns ("body" for the whole line),
	// for lines rejected before sending; empty for queue failures.
	Field string `json:"field,omitempty"`
	// Code is the queue's error code, for lines the queue did not accept.
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason"`
}

func (p LineProblem) String() string {
	return fmt.Sprintf("line %d: %s", p.Line, p.Reason)
}

// SendResult is what a Send did.
type SendResult struct {
	Lines int // non-blank lines read
	Sent  int
	// Bad lists lines rejected before sending, in line order.
	Bad []LineProblem
	// Unsent lists valid lines the queue did not accept, in line order.
	Unsent []LineProblem
}

// Complete reports whether every line read was sent.
func (r SendResult) Complete() bool {
	return len(r.Bad) == 0 && len(r.Unsent) == 0 && r.Sent == r.Lines
}

// Send reads messages from in, one JSON object per line (blank lines are
// skipped), checks each as the function would (attribution.DecodeMessage,
// then the primitive's kind) and sends the valid ones in batches of at
// most MaxBatchEntries messages and MaxBatchBytes bytes, in line order.
// Bad lines are reported in the result and not sent.
//
// Entries the queue fails without blaming the sender are sent again with
// backoff, up to MaxAttempts calls; the others, and those still failing,
// are reported in the result. A call that fails as a whole (after the
// SDK's own retries) ends the Send: the error is returned with the result
// so far, the lines of that call among Unsent; the lines after it are not
// read. A queue that does not exist is a *MissingResourceError.
func (s *Sender) Send(ctx context.Context, in io.Reader) (SendResult, error) {
	var res SendResult
	reg := s.Registry
	if reg == nil {
		reg = attribution.BuiltinRegistry()
	}
	counter := &countingReader{r: in}
	r := bufio.NewReaderSize(counter, 64*1024)
	var batch []sendEntry
	size := 0
	maxBytes := s.BatchBytes
	if maxBytes <= 0 || maxBytes > MaxBatchBytes {
		maxBytes = MaxBatchBytes
	}
	progress := func() {
		if s.Progress != nil {
			s.Progress(SendProgress{BytesRead: counter.n, Lines: res.Lines, Sent: res.Sent, Bad: len(res.Bad), Unsent: len(res.Unsent)})
		}
	}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := s.sendBatch(ctx, batch, &res)
		batch, size = batch[:0], 0
		progress()
		return err
	}
	for lineNo := 1; ; lineNo++ {
		line, readErr := r.ReadBytes('\n')
		if readErr != nil && !errors.Is(readErr, io.EOF) {
			return res, errors.Join(flush(), fmt.Errorf("read line %d: %w", lineNo, readErr))
		}
		if body := bytes.TrimSpace(line); len(body) > 0 {
			res.Lines++
			if p, bad := check(lineNo, body, reg); bad {
				res.Bad = append(res.Bad, p)
				progress()
			} else {
				if len(batch) == MaxBatchEntries || size+len(body) > maxBytes {
					if err := flush(); err != nil {
						return res, err
					}
				}
				batch = append(batch, sendEntry{line: lineNo, body: string(body)})
				size += len(body)
			}
		}
		if readErr != nil {
			break
		}
		if err := ctx.Err(); err != nil {
			res.Unsent = append(res.Unsent, unsent(batch, "", err.Error())...)
			return res, err
		}
	}
	return res, flush()
}

// check validates one line as the function will.
func check(lineNo int, body []byte, reg attribution.Registry) (LineProblem, bool) {
	if err := sqsBody(body); err != nil {
		return LineProblem{Line: lineNo, Field: "body", Reason: "body: " + err.Error()}, true
	}
	d, err := attribution.Decode(body)
	if err == nil && d.Identity == nil && d.Ignored == "" {
		err = d.Observation.Validate(reg.Kind(d.Observation.Primitive))
	}
	if err != nil {
		return LineProblem{Line: lineNo, Field: attribution.ErrorField(err), Reason: err.Error()}, true
	}
	return LineProblem{}, false
}

// sqsBody checks the characters SQS accepts in a message body: valid UTF-8
// of #x9, #xA, #xD, #x20 to #xD7FF, #xE000 to #xFFFD, #x10000 to #x10FFFF.
func sqsBody(body []byte) error {
	for i := 0; i < len(body); {
		r, n := utf8.DecodeRune(body[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			return fmt.Errorf("not valid UTF-8 at byte %d", i)
		case r == 0x9 || r == 0xA || r == 0xD,
			r >= 0x20 && r <= 0xD7FF,
			r >= 0xE000 && r <= 0xFFFD,
			r >= 0x10000 && r <= 0x10FFFF:
		default:
			return fmt.Errorf("character %U at byte %d is not allowed in an SQS message", r, i)
		}
		i += n
	}
	return nil
}

type sendEntry struct {
	line int
	body string
}

func entryID(line int) string { return "line-" + strconv.Itoa(line) }

// sendBatch sends one batch, retrying the entries the queue failed on its
// side, and records the outcome of every entry in res.
func (s *Sender) sendBatch(ctx context.Context, batch []sendEntry, res *SendResult) error {
	pending := append([]sendEntry(nil), batch...)
	var problems []LineProblem
	defer func() {
		res.Unsent = append(res.Unsent, problems...)
		slices.SortFunc(res.Unsent, func(a, b LineProblem) int { return a.Line - b.Line })
	}()
	maxAttempts := s.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = DefaultSendAttempts
	}
	for attempt := 1; len(pending) > 0; attempt++ {
		if attempt > 1 {
			if err := s.sleep(ctx, s.backoff(attempt-1)); err != nil {
				problems = append(problems, unsent(pending, "", err.Error())...)
				return err
			}
		}
		in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(s.QueueURL)}
		byID := make(map[string]sendEntry, len(pending))
		for _, e := range pending {
			id := entryID(e.line)
			byID[id] = e
			in.Entries = append(in.Entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(id), MessageBody: aws.String(e.body)})
		}
		out, err := s.Client.SendMessageBatch(ctx, in)
		if err != nil {
			err = missing(err, "queue", s.QueueURL)
			problems = append(problems, unsent(pending, "", err.Error())...)
			return fmt.Errorf("send lines %d to %d: %w", pending[0].line, pending[len(pending)-1].line, err)
		}
		for _, ok := range out.Successful {
			if _, known := byID[aws.ToString(ok.Id)]; known {
				delete(byID, aws.ToString(ok.Id))
				res.Sent++
			}
		}
		var retry []sendEntry
		for _, f := range out.Failed {
			e, known := byID[aws.ToString(f.Id)]
			if !known {
				continue
			}
			delete(byID, aws.ToString(f.Id))
			code, msg := aws.ToString(f.Code), aws.ToString(f.Message)
			if f.SenderFault || attempt >= maxAttempts {
				reason := fmt.Sprintf("rejected by the queue: %s: %s", code, msg)
				if !f.SenderFault {
					reason = fmt.Sprintf("queue failed it %d times: %s: %s", attempt, code, msg)
				}
				problems = append(problems, LineProblem{Line: e.line, Code: code, Reason: reason})
				continue
			}
			retry = append(retry, e)
		}
		// An entry the response does not mention is retried too.
		for _, e := range pending {
			if _, unanswered := byID[entryID(e.line)]; !unanswered {
				continue
			}
			if attempt >= maxAttempts {
				problems = append(problems, LineProblem{Line: e.line, Reason: fmt.Sprintf("the queue did not answer for it in %d attempts", attempt)})
				continue
			}
			retry = append(retry, e)
		}
		slices.SortFunc(retry, func(a, b sendEntry) int { return a.line - b.line })
		pending = retry
	}
	return nil
}

func unsent(entries []sendEntry, code, reason string) []LineProblem {
	out := make([]LineProblem, len(entries))
	for i, e := range entries {
		out[i] = LineProblem{Line: e.line, Code: code, Reason: reason}
	}
	return out
}

func (s *Sender) backoff(n int) time.Duration {
	base, ceiling := s.BaseDelay, s.MaxDelay
	if base <= 0 {
		base = DefaultBaseDelay
	}
	if ceiling <= 0 {
		ceiling = DefaultMaxDelay
	}
	return backoff.Jitter(n, base, ceiling)
}

func (s *Sender) sleep(ctx context.Context, d time.Duration) error {
	if s.Sleep != nil {
		return s.Sleep(ctx, d)
	}
	return backoff.Sleep(ctx, d)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
