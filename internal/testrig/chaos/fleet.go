package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/config"
	"decnet-attribution/internal/sqshandler"
	"decnet-attribution/internal/testrig/chaos/crash"
	"decnet-attribution/internal/testrig/devstack"
	"decnet-attribution/internal/testrig/sqspoller"
	"decnet-attribution/internal/wiring"
)

// fleet runs the function in process, as Lambda runs instances: a batch
// goes to an idle instance or to a new (cold) one, and an instance that
// died is never used again. Its invocation fails as a whole, as a crashed
// runtime's does, so the batch is redelivered.
type fleet struct {
	cfg      config.Config
	endpoint string // where the function's AWS calls go
	plan     *crash.Plan
	recorder crash.Recorder // nil: commits are not recorded
	order    func([]attribution.Observation)
	probe    attribution.Store
	logs     *lineSink
	metrics  *metricsSink
	http     aws.HTTPClient // sends them, injecting faults

	sabotageStore     func(attribution.Store) attribution.Store
	sabotagePublisher func(attribution.Publisher) attribution.Publisher

	idle       chan *instance
	built      atomic.Int64
	crashes    atomic.Int64
	sdkRetries atomic.Int64
}

var _ sqspoller.Invoker = (*fleet)(nil)

type instance struct {
	handler *sqshandler.Handler
	life    *life
}

// life is an instance's liveness: once it dies, every call it makes fails
// at once and no further request leaves it.
type life struct {
	dead        atomic.Bool
	mu          sync.Mutex
	point, site string
}

func (l *life) isDead() bool { return l.dead.Load() }

func (l *life) die(point crash.Point, site string) error {
	l.mu.Lock()
	l.point, l.site = string(point), site
	l.mu.Unlock()
	l.dead.Store(true)
	return crash.ErrCrashed
}

func (l *life) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.point + " " + l.site
}

func newFleet(cfg config.Config, endpoint string, client aws.HTTPClient, size int) *fleet {
	return &fleet{
		cfg: cfg, endpoint: endpoint,
		logs: &lineSink{}, metrics: &metricsSink{},
		http: client,
		idle: make(chan *instance, size),
	}
}

func (f *fleet) newInstance() (*instance, error) {
	l := &life{}
	awsCfg := devstack.AWSConfig(f.endpoint, devstack.DefaultRegion)
	awsCfg.HTTPClient = &guardedClient{inner: f.http, life: l}
	awsCfg.Retryer = func() aws.Retryer {
		return &crash.CountingRetryer{RetryerV2: retry.NewStandard(), N: &f.sdkRetries, Dead: l.isDead}
	}
	h, err := wiring.New(f.cfg, awsCfg, wiring.Options{
		Logger:       f.logs.logger(),
		MetricsOut:   f.metrics,
		FunctionName: "chaos",
	})
	if err != nil {
		return nil, fmt.Errorf("build function instance: %w", err)
	}
	// Sabotage (in the harness's own tests) and crash points wrap the
	// adapters the function was wired with.
	proc := h.Processor
	if f.sabotageStore != nil {
		proc.Store = f.sabotageStore(proc.Store)
	}
	if f.sabotagePublisher != nil {
		proc.Publisher = f.sabotagePublisher(proc.Publisher)
	}
	cs := &crash.Store{Store: proc.Store, Plan: f.plan, Die: l.die, Dead: l.isDead, Probe: f.probe, Order: f.order}
	if f.recorder != nil {
		cs.Recorder = f.recorder
	}
	proc.Store = cs
	proc.Publisher = &crash.Publisher{Publisher: proc.Publisher, Plan: f.plan, Die: l.die, Dead: l.isDead}
	f.built.Add(1)
	return &instance{handler: h, life: l}, nil
}

// Invoke implements sqspoller.Invoker.
func (f *fleet) Invoke(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	var inst *instance
	select {
	case inst = <-f.idle:
	default:
		var err error
		if inst, err = f.newInstance(); err != nil {
			return events.SQSEventResponse{}, err
		}
	}
	resp, err := inst.handler.Handle(ctx, ev)
	if inst.life.isDead() {
		f.crashes.Add(1)
		return events.SQSEventResponse{}, fmt.Errorf("function instance died (%s)", inst.life)
	}
	select {
	case f.idle <- inst:
	default:
	}
	return resp, err
}

var errDead = errors.New("function instance is dead: no request leaves it")

// guardedClient sends no request once its instance died.
type guardedClient struct {
	inner aws.HTTPClient
	life  *life
}

func (c *guardedClient) Do(r *http.Request) (*http.Response, error) {
	if c.life.isDead() {
		return nil, errDead
	}
	return c.inner.Do(r)
}

// lineSink keeps the function's log lines.
type lineSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *lineSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// logger writes JSON lines shaped like the function's in Lambda.
func (s *lineSink) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(s, &slog.HandlerOptions{ReplaceAttr: lambdacontext.ReplaceAttr}))
}

func (s *lineSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// loggedRejection is a "rejected invalid message" line of the function's log.
type loggedRejection struct {
	MessageID, Field, Reason string
}

// rejections finds the rejection lines of a JSON log.
func rejections(log string) map[string]loggedRejection {
	out := map[string]loggedRejection{}
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte("rejected invalid message")) {
			continue
		}
		var l struct {
			Msg       string `json:"msg"`
			Message   string `json:"message"`
			MessageID string `json:"message_id"`
			Field     string `json:"field"`
			Reason    string `json:"reason"`
		}
		if json.Unmarshal(line, &l) != nil || (l.Msg != "rejected invalid message" && l.Message != "rejected invalid message") {
			continue
		}
		out[l.MessageID] = loggedRejection{MessageID: l.MessageID, Field: l.Field, Reason: l.Reason}
	}
	return out
}

// metricsSink sums the counts of the function's EMF lines (and the crash
// binary's retry lines).
type metricsSink struct {
	mu     sync.Mutex
	totals map[string]int64
}

func (m *metricsSink) Write(p []byte) (int, error) {
	m.add(string(p))
	return len(p), nil
}

func (m *metricsSink) add(text string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.totals == nil {
		m.totals = map[string]int64{}
	}
	for _, line := range strings.Split(text, "\n") {
		if !strings.Contains(line, `"_aws"`) && !strings.Contains(line, `"chaos_sdk_retries"`) {
			continue
		}
		var doc map[string]any
		if json.Unmarshal([]byte(line), &doc) != nil {
			continue
		}
		for k, v := range doc {
			if n, ok := v.(float64); ok && k != "_aws" {
				m.totals[k] += int64(n)
			}
		}
	}
}

func (m *metricsSink) get(name string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.totals[name]
}
