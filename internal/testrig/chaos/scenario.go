package chaos

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/backoff"
	"decnet-attribution/internal/config"
	"decnet-attribution/internal/testrig/chaos/crash"
	"decnet-attribution/internal/testrig/devstack"
	"decnet-attribution/internal/testrig/faultproxy"
	"decnet-attribution/internal/testrig/sqspoller"
)

// Env is where scenarios run.
type Env struct {
	// Endpoint is the AWS endpoint (a moto server). Every scenario
	// provisions its own copy of the template there.
	Endpoint string
	Template *devstack.Template
	// WorkDir receives per-scenario files (crash markers, applied logs,
	// emulator logs).
	WorkDir string
	// RIE and CrashBootstrap are the Runtime Interface Emulator and the
	// crash binary (internal/testrig/chaos/crashfn built for the host), needed by
	// scenarios with Emulator set.
	RIE            string
	CrashBootstrap string
	// Progress, when set, receives a line per phase.
	Progress io.Writer
}

// Scenario is one chaos run: a generated stream through the stack with
// faults, crashes and some number of pollers.
type Scenario struct {
	Name   string
	Stream StreamConfig
	// Pollers of the event source mapping; one is the sequential case.
	Pollers   int
	BatchSize int // default 10
	// VisibilityTimeout of each receive (default 2s): how soon a failed
	// message comes back.
	VisibilityTimeout time.Duration
	// MaxReceiveCount overrides the template parameter when non-zero.
	MaxReceiveCount int
	// Concurrency overrides ATTRIBUTION_CONCURRENCY when non-zero.
	Concurrency int
	// Faults are the fault rules between the function and AWS.
	Faults    []faultproxy.Rule
	FaultSeed int64
	// BusOutage, when set, makes every PutEvents call fail for a while.
	BusOutage *Outage
	// Crash gives the rate of each crash point.
	Crash     map[crash.Point]float64
	CrashSeed uint64
	// Emulator runs the crash binary under the Runtime Interface Emulator
	// (one poller), so a crash is a real process exit; otherwise the
	// function runs in process and a crash abandons the instance.
	Emulator bool
	// SendOrder also requires the delivered transitions to be exactly the
	// replay of the send order (meaningful without faults or crashes).
	SendOrder bool
	// Timeout bounds the run (default 10 minutes).
	Timeout time.Duration

	// Sabotage, for the harness's own tests: decorators that break the
	// function in process, to show the verdicts catch it.
	sabotageStore     func(attribution.Store) attribution.Store
	sabotagePublisher func(attribution.Publisher) attribution.Publisher
}

// Outage is a period during which the bus accepts no event.
type Outage struct {
	// AfterShare is the share of the messages settled before it starts.
	AfterShare float64
	For        time.Duration
}

// outageRules are the fault rules during a bus outage: those of the
// scenario for DynamoDB and SQS, and every PutEvents call failing, whole
// (throttled, 500, connection dropped) or entry by entry.
func (s Scenario) outageRules() []faultproxy.Rule {
	var rules []faultproxy.Rule
	for _, r := range s.Faults {
		if r.Service != faultproxy.EventBridge {
			rules = append(rules, r)
		}
	}
	return append(rules, faultproxy.Rule{
		Service: faultproxy.EventBridge, Operation: "PutEvents",
		Throttle: 0.3, InternalError: 0.3, DropBeforeForward: 0.2, FailEntry: 1,
	})
}

// Sequential reports whether the scenario has a single poller, where the
// order of application is well defined.
func (s Scenario) Sequential() bool { return s.Pollers <= 1 }

func (s Scenario) progress(env Env, format string, args ...any) {
	if env.Progress != nil {
		fmt.Fprintf(env.Progress, "%s [%s] %s\n", time.Now().Format("15:04:05.000"), s.Name, fmt.Sprintf(format, args...))
	}
}

// Run runs the scenario and checks the outcome. The error reports a
// harness failure (the stack could not be set up); violations are in the
// report's verdicts.
func Run(ctx context.Context, env Env, sc Scenario) (*Report, error) {
	if sc.Pollers <= 0 {
		sc.Pollers = 1
	}
	if sc.BatchSize == 0 {
		sc.BatchSize = 10
	}
	if sc.VisibilityTimeout == 0 {
		sc.VisibilityTimeout = 2 * time.Second
	}
	if sc.Timeout == 0 {
		sc.Timeout = 10 * time.Minute
	}
	if sc.Emulator && sc.Pollers != 1 {
		return nil, fmt.Errorf("scenario %s: the emulator runs one invocation at a time: use one poller", sc.Name)
	}
	if sc.Stream.Amendments > 0 && !sc.Sequential() {
		return nil, fmt.Errorf("scenario %s: amendments need one poller (last write is only defined in order)", sc.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, sc.Timeout)
	defer cancel()
	start := time.Now()

	stream := Generate(sc.Stream)
	params := map[string]string{}
	if sc.MaxReceiveCount > 0 {
		params["MaxReceiveCount"] = strconv.Itoa(sc.MaxReceiveCount)
	}
	sc.progress(env, "provisioning the stack")
	st, err := provision(ctx, env, sc.Name, params)
	if err != nil {
		return nil, err
	}
	lin, err := startLinearizer(env.Endpoint, st.store.Tables)
	if err != nil {
		return nil, err
	}
	defer lin.close()
	st.useEndpoint(lin.URL())
	faults, err := faultproxy.New(faultproxy.Config{Seed: sc.FaultSeed, Rules: sc.Faults})
	if err != nil {
		return nil, fmt.Errorf("fault injector: %w", err)
	}
	defer faults.CloseIdleConnections()

	vars := st.EnvMap()
	if sc.Concurrency > 0 {
		vars["ATTRIBUTION_CONCURRENCY"] = strconv.Itoa(sc.Concurrency)
	}
	cfg, err := config.FromEnv(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		return nil, fmt.Errorf("function configuration from the stack: %w", err)
	}

	fn, err := startFunction(env, sc, st, cfg, vars, faults, lin.URL())
	if err != nil {
		return nil, err
	}
	defer fn.stop()

	mapping, err := sqspoller.New(sqs.NewFromConfig(st.cfg), fn.invoker, sqspoller.Config{
		QueueURL:          st.QueueURL(devstack.ObservationQueueID),
		BatchSize:         sc.BatchSize,
		VisibilityTimeout: sc.VisibilityTimeout,
		WaitTimeSeconds:   1,
		Pollers:           sc.Pollers,
	})
	if err != nil {
		return nil, fmt.Errorf("event source mapping: %w", err)
	}
	sc.progress(env, "sending %d messages and processing them with %d poller(s)", len(stream.Messages), sc.Pollers)
	outage := startOutage(ctx, sc, mapping, faults, len(stream.Messages), func(format string, args ...any) { sc.progress(env, format, args...) })
	err = feedAndDrain(ctx, st, mapping, stream.Messages, backlog(sc.Pollers, sc.BatchSize), func(format string, args ...any) { sc.progress(env, format, args...) })
	outageHeld := outage()
	if err != nil {
		return nil, err
	}
	if sc.BusOutage != nil && outageHeld == 0 {
		return nil, fmt.Errorf("scenario %s: the bus outage never started", sc.Name)
	}
	processed := time.Since(start)
	if err := fn.stop(); err != nil {
		return nil, err
	}

	sc.progress(env, "collecting events, alerts, dead letters and states")
	obs, err := collect(ctx, st, stream)
	if err != nil {
		return nil, err
	}
	applied, unknown, err := fn.applied()
	if err != nil {
		return nil, err
	}
	obs.applied, obs.appliedUnknown = applied, unknown
	if obs.journal, obs.written, err = lin.applied(); err != nil {
		return nil, err
	}
	orders, err := fn.orders()
	if err != nil {
		return nil, err
	}
	obs.journal = inCommitOrder(obs.journal, orders)
	obs.logs = fn.logs()

	sc.progress(env, "replaying in memory and checking")
	verdicts, err := check(ctx, sc, stream, obs, cfg)
	if err != nil {
		return nil, err
	}
	rep := &Report{
		Scenario: sc.Name, Pollers: sc.Pollers, Emulator: sc.Emulator,
		Stream: stream.Counts(), Deliveries: mapping.Stats(),
		Faults:            faults.Stats(),
		Crashes:           fn.crashes(),
		CrashesAt:         fn.crashesByPoint(),
		Outage:            outageHeld,
		Exits:             fn.exitCount(),
		Metrics:           fn.metricTotals(),
		Events:            obs.eventSummary(),
		Applied:           len(journalObservations(obs.journal)),
		MembershipApplied: membershipFigures(obs.journal, stream),
		Duration:          processed, Total: time.Since(start),
		Verdicts: verdicts,
	}
	rep.AppliedUnknown = unknown
	return rep, nil
}

// backlog bounds the messages sent and not yet settled: producers send as
// the function consumes. moto's ReceiveMessage costs time proportional to
// the messages the queue holds for every message it returns, so a small
// backlog keeps the run fast; it stays above what the pollers hold.
func backlog(pollers, batch int) int { return 30 + pollers*batch }

// feedAndDrain sends the messages in order while the mapping runs, keeping
// the backlog (messages sent and not yet deleted or bound for the
// dead-letter queue) bounded, and stops the mapping once the queue has
// stayed empty for a second.
func feedAndDrain(ctx context.Context, st *stack, mapping *sqspoller.Mapping, msgs []Message, maxBacklog int, progress func(string, ...any)) error {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- mapping.Run(runCtx) }()
	settled := func() int {
		s := mapping.Stats()
		return int(s.Deleted + s.DeadLettered)
	}
	sent := 0
	wait := time.NewTicker(50 * time.Millisecond)
	defer wait.Stop()
	lastReport := time.Now()
	report := func() {
		if time.Since(lastReport) >= 15*time.Second {
			lastReport = time.Now()
			s := mapping.Stats()
			progress("sent %d of %d, settled %d, deliveries %d (%d redeliveries)", sent, len(msgs), settled(), s.Delivered, s.Redelivered)
		}
	}
	for sent < len(msgs) {
		report()
		if sent-settled() >= maxBacklog {
			select {
			case err := <-done:
				return fmt.Errorf("event source mapping stopped: %v", err)
			case <-ctx.Done():
				return ctx.Err()
			case <-wait.C:
			}
			continue
		}
		chunk := msgs[sent:min(sent+10, len(msgs))]
		if err := st.send(ctx, chunk); err != nil {
			return err
		}
		sent += len(chunk)
	}
	// Every message is sent; wait until the queue stays empty. (The
	// mapping's delete count can exceed the messages sent: a message whose
	// visibility timeout expired during its invocation is received and
	// deleted twice.)
	check := time.NewTicker(time.Second)
	defer check.Stop()
	for empty := 0; empty < 2; {
		select {
		case err := <-done:
			return fmt.Errorf("event source mapping stopped: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("messages still in the queue after the deadline: %w", ctx.Err())
		case <-check.C:
		}
		report()
		n, err := st.queueDepth(ctx, st.QueueURL(devstack.ObservationQueueID))
		if err != nil || n > 0 {
			empty = 0
			continue
		}
		empty++
	}
	stop()
	return <-done
}

// startOutage runs the scenario's bus outage, if any, once the share of
// messages it waits for is settled. The returned function stops it and
// reports how long it lasted.
func startOutage(ctx context.Context, sc Scenario, mapping *sqspoller.Mapping, faults *faultproxy.Injector, messages int, progress func(string, ...any)) func() time.Duration {
	if sc.BusOutage == nil {
		return func() time.Duration { return 0 }
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan time.Duration, 1)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				done <- 0
				return
			case <-tick.C:
			}
			s := mapping.Stats()
			if float64(s.Deleted+s.DeadLettered) >= sc.BusOutage.AfterShare*float64(messages) {
				break
			}
		}
		if err := faults.SetRules(sc.outageRules()...); err != nil {
			progress("bus outage not started: %v", err)
			done <- 0
			return
		}
		progress("bus outage: every PutEvents fails for %s", sc.BusOutage.For)
		start := time.Now()
		_ = backoff.Sleep(ctx, sc.BusOutage.For) // cut short when the run stops
		_ = faults.SetRules(sc.Faults...)        // valid: New accepted them
		progress("bus outage over")
		done <- time.Since(start)
	}()
	return func() time.Duration {
		cancel()
		return <-done
	}
}

// function is the function under test, in process or under the emulator.
type function struct {
	invoker  sqspoller.Invoker
	stopOnce sync.Once
	stopErr  error
	stopFn   func() error
	applied  func() ([]attribution.Observation, int, error)
	// orders are the observations of each commit of several, in the
	// order the function applied them.
	orders  func() ([][]attribution.Observation, error)
	logs    func() string
	crashes func() int64
	sites   func() []string // the crash sites that fired, "point site"
	metrics *metricsSink
	built   func() int64
	retries func() int64
	exits   func() int64 // process deaths by a crash (emulator)
}

func (f *function) stop() error {
	f.stopOnce.Do(func() {
		if f.stopFn != nil {
			f.stopErr = f.stopFn()
		}
	})
	return f.stopErr
}

func (f *function) exitCount() int64 {
	if f.exits == nil {
		return 0
	}
	return f.exits()
}

// crashesByPoint counts the crash sites that fired, by point.
func (f *function) crashesByPoint() map[crash.Point]int64 {
	out := map[crash.Point]int64{}
	for _, p := range crash.Points {
		out[p] = 0
	}
	if f.sites == nil {
		return out
	}
	for _, s := range f.sites() {
		point, _, _ := strings.Cut(s, " ")
		out[crash.Point(point)]++
	}
	return out
}

func (f *function) metricTotals() Metrics {
	return Metrics{
		SDKRetries:       f.retries(),
		PublishRetries:   f.metrics.get("PublishRetries"),
		PublishFailures:  f.metrics.get(attribution.MetricPublishFailures),
		VersionConflicts: f.metrics.get(attribution.MetricVersionConflicts),
		Duplicates:       f.metrics.get(attribution.MetricDuplicates),
		Amendments:       f.metrics.get(attribution.MetricAmendments),
		Rejected:         f.metrics.get(attribution.MetricRejected),
		Membership:       f.metrics.get(attribution.MetricMembership),
		Rekeyed:          f.metrics.get(attribution.MetricRekeyed),
		Instances:        f.built(),
	}
}

// startFunction starts the function with its AWS calls going through
// faults to the endpoint at truthURL (the linearizer).
func startFunction(env Env, sc Scenario, st *stack, cfg config.Config, vars map[string]string, faults *faultproxy.Injector, truthURL string) (*function, error) {
	plan := crash.Config{Seed: sc.CrashSeed, AfterCommit: sc.Crash[crash.AfterCommit], AfterPublish: sc.Crash[crash.AfterPublish], AfterMembership: sc.Crash[crash.AfterMembership], AfterSpill: sc.Crash[crash.AfterSpill]}
	if sc.Emulator {
		return startEmulated(env, sc, st, vars, faults, truthURL, plan)
	}
	fl := newFleet(cfg, truthURL, faults.Client(), sc.Pollers)
	fl.sabotageStore, fl.sabotagePublisher = sc.sabotageStore, sc.sabotagePublisher
	once := &crash.MemoryOnce{}
	fl.plan = &crash.Plan{Seed: plan.Seed, Rates: plan.Rates(), Once: once}
	fl.probe = st.store
	orders := &commitOrders{}
	fl.order = orders.add
	var rec *memRecorder
	if sc.Sequential() {
		rec = &memRecorder{}
		fl.recorder = rec
	}
	return &function{
		invoker: fl,
		orders:  orders.all,
		applied: func() ([]attribution.Observation, int, error) {
			if rec == nil {
				return nil, 0, nil
			}
			return rec.result()
		},
		logs:    fl.logs.String,
		crashes: fl.crashes.Load,
		sites:   once.Sites,
		metrics: fl.metrics,
		built:   fl.built.Load,
		retries: fl.sdkRetries.Load,
	}, nil
}

// startEmulated runs the crash binary under the emulator. Its process
// reaches AWS through a fault proxy serving faults: the same counts and
// rules (a bus outage too) across the processes that crashes replace, and
// counts that survive a process's exit.
func startEmulated(env Env, sc Scenario, st *stack, vars map[string]string, faults *faultproxy.Injector, truthURL string, plan crash.Config) (_ *function, err error) {
	if env.RIE == "" || env.CrashBootstrap == "" {
		return nil, fmt.Errorf("scenario %s needs the Runtime Interface Emulator and the crash binary", sc.Name)
	}
	dir := filepath.Join(env.WorkDir, devstack.UniqueName(sc.Name+"-"))
	plan.MarkerDir = filepath.Join(dir, "crashes")
	plan.AppliedLog = filepath.Join(dir, "applied.jsonl")
	plan.ProbeEndpoint = truthURL
	if err := os.MkdirAll(plan.MarkerDir, 0o755); err != nil {
		return nil, fmt.Errorf("crash marker directory: %w", err)
	}
	lambdaEnv := map[string]string{}
	for k, v := range devstack.ParseEnv(st.LambdaEnv()) {
		lambdaEnv[k] = v
	}
	for k, v := range vars {
		lambdaEnv[k] = v
	}
	proxy, err := faultproxy.Start(truthURL, faults)
	if err != nil {
		return nil, fmt.Errorf("start fault proxy: %w", err)
	}
	defer func() {
		if err != nil {
			_ = proxy.Close()
		}
	}()
	lambdaEnv["AWS_ENDPOINT_URL"] = proxy.URL()
	// One unit at a time: when the process exits, no other commit of the
	// invocation is in flight, so the applied log is exact.
	lambdaEnv["ATTRIBUTION_CONCURRENCY"] = "1"
	for k, v := range devstack.ParseEnv(plan.Env()) {
		lambdaEnv[k] = v
	}
	var envList []string
	for k, v := range lambdaEnv {
		envList = append(envList, k+"="+v)
	}
	sort.Strings(envList)
	logPath := filepath.Join(dir, "function.log")
	em, err := devstack.StartEmulator(devstack.EmulatorOptions{RIE: env.RIE, Bootstrap: env.CrashBootstrap, Env: envList, LogPath: logPath})
	if err != nil {
		return nil, err
	}
	metrics := &metricsSink{}
	readLog := func() string {
		b, _ := os.ReadFile(logPath)
		return string(b)
	}
	var crashes, starts, exits int64
	var sites []string
	f := &function{
		invoker: &sqspoller.HTTPInvoker{URL: em.InvokeURL},
		stopFn: func() error {
			err := em.Stop()
			if perr := proxy.Close(); err == nil && perr != nil {
				err = perr
			}
			log := readLog()
			metrics.add(log)
			starts = int64(strings.Count(log, "INIT START("))
			exits = int64(strings.Count(log, fmt.Sprintf("exited: exit status %d", crash.ExitCode)))
			var serr error
			sites, serr = crash.DirOnce(plan.MarkerDir).Sites()
			crashes = int64(len(sites))
			if err != nil {
				return fmt.Errorf("stop emulator: %w", err)
			}
			return serr
		},
		orders: func() ([][]attribution.Observation, error) {
			entries, err := crash.ReadLog(plan.AppliedLog)
			var out [][]attribution.Observation
			for _, e := range entries {
				if len(e.Observations) > 1 {
					out = append(out, e.Observations)
				}
			}
			return out, err
		},
		applied: func() ([]attribution.Observation, int, error) {
			entries, err := crash.ReadLog(plan.AppliedLog)
			if err != nil {
				return nil, 0, err
			}
			var obs []attribution.Observation
			unknown := 0
			for _, e := range entries {
				if e.Outcome == crash.OutcomeApplied {
					obs = append(obs, e.Observations...)
				} else {
					unknown++
				}
			}
			return obs, unknown, nil
		},
		logs:    readLog,
		crashes: func() int64 { return crashes },
		sites:   func() []string { return sites },
		metrics: metrics,
		built:   func() int64 { return starts },
		exits:   func() int64 { return exits },
		retries: func() int64 { return metrics.get("chaos_sdk_retries") },
	}
	return f, nil
}

// memRecorder is a crash.Recorder in memory.
type memRecorder struct {
	mu      sync.Mutex
	obs     []attribution.Observation
	unknown int
}

func (r *memRecorder) Applied(obs []attribution.Observation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.obs = append(r.obs, obs...)
}

func (r *memRecorder) Unknown([]attribution.Observation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unknown++
}

// commitOrders keeps the order of the observations of each commit of
// several (see inCommitOrder).
type commitOrders struct {
	mu      sync.Mutex
	several [][]attribution.Observation
}

func (o *commitOrders) add(obs []attribution.Observation) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.several = append(o.several, slices.Clone(obs))
}

func (o *commitOrders) all() ([][]attribution.Observation, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.several), nil
}

func (r *memRecorder) result() ([]attribution.Observation, int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]attribution.Observation(nil), r.obs...), r.unknown, nil
}
