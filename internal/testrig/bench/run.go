package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sort"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/config"
	"decnet-attribution/internal/ddbstore"
	"decnet-attribution/internal/itemsize"
	"decnet-attribution/internal/sqshandler"
	"decnet-attribution/internal/testrig/capacity"
	"decnet-attribution/internal/testrig/devstack"
	"decnet-attribution/internal/wiring"
)

// Design is a handler mode being measured.
type Design string

// The designs compared.
const (
	// Incremental is the service as deployed: series records updated in
	// O(1) per observation, each record the one commit point of its
	// series (attribution.Incremental).
	Incremental Design = "incremental"
	// Transactional writes each observation item with its series record
	// in one transaction (attribution.Transactional), the store's first
	// design.
	Transactional Design = "transactional"
	// FullRecompute reads the whole series for every observation, as the
	// reference worker does (attribution.Processor.FullRecompute), and
	// commits transactionally.
	FullRecompute Design = "full-recompute"
)

// commitDesign is the processor's commit design under d.
func (d Design) commitDesign() attribution.Design {
	if d == Incremental {
		return attribution.Incremental
	}
	return attribution.Transactional
}

// Burst is a batch shape where several observations of one series share
// a batch.
type Burst struct {
	Batch                 int // observations in the batch
	PerSeries             int // observations of each series (divides Batch)
	PrimitivesPerAttacker int
}

// Config says what to measure.
type Config struct {
	// Histories are the prior history lengths per series.
	Histories []int
	// Batches are the batch sizes of the session pattern.
	Batches []int
	// FullRecompute lists, per history, the batch sizes the full-recompute
	// design runs at; a history missing from the map runs all of Batches.
	// The design reads history × batch stored items per batch, so the
	// deepest histories are kept to small batches.
	FullRecompute map[int][]int
	// Bursts are measured warm, after the session batches.
	Bursts []Burst
	// ShortHistories are prior histories of short series, each measured
	// at every batch size on series of exactly that history: a fresh
	// handler per batch, so the rows read the records (their write units
	// are what they measure).
	ShortHistories []int
	// Cold adds a row per cell for a fresh handler's first batch.
	Cold bool
	// TimedObservations is about how many observations each timed cell
	// processes (at least one batch; the full-recompute design at most
	// TimedItemReads stored items). Zero skips timing.
	TimedObservations int
	TimedItemReads    int
	// Noise overrides the workload's departure probability when >= 0.
	Noise float64
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any)
}

// DefaultConfig is what `make bench` measures.
func DefaultConfig() Config {
	return Config{
		Histories:         []int{10, 1000, 10000},
		Batches:           []int{1, 10, 100},
		FullRecompute:     map[int][]int{10000: {1}},
		Bursts:            []Burst{{Batch: 10, PerSeries: 5, PrimitivesPerAttacker: 2}, {Batch: 100, PerSeries: 4, PrimitivesPerAttacker: 10}},
		ShortHistories:    []int{0, 2, 5},
		Cold:              true,
		TimedObservations: 10,
		TimedItemReads:    10000,
		Noise:             -1,
	}
}

// Target is where to run: an AWS endpoint (moto) and the template.
type Target struct {
	AWS      aws.Config
	Endpoint string
	Template *devstack.Template
	// Reset, if set, clears the endpoint before each history level.
	Reset func(context.Context) error
}

// Usage is what one batch consumed of one operation.
type Usage struct {
	Requests int64   `json:"requests"`
	RCU      float64 `json:"rcu"`
	WCU      float64 `json:"wcu"`
}

// Row is the cost of one batch shape, per observation.
type Row struct {
	Design  Design `json:"design"`
	History int    `json:"history"`
	Batch   int    `json:"batch"`
	// Per observation.
	RequestsPerObs           float64 `json:"requests_per_obs"`
	RCUPerObs                float64 `json:"rcu_per_obs"`
	WCUPerObs                float64 `json:"wcu_per_obs"`
	EventBridgeEntriesPerObs float64 `json:"eventbridge_entries_per_obs"`
	// CPUMicrosPerObs is the process CPU time (user + system) spent in the
	// handler, per observation, from un-metered batches of the same shape.
	CPUMicrosPerObs float64 `json:"cpu_us_per_obs,omitempty"`
	// WallMillisPerBatch is the handler's wall time per batch against the
	// local emulator (its latency, not AWS's), un-metered.
	WallMillisPerBatch float64 `json:"wall_ms_per_batch,omitempty"`
	// CriticalPathRequests is the most DynamoDB requests one identity's
	// observations waited on in the batch (the processor handles
	// identities in parallel, each one's requests in sequence), and
	// CriticalPathPutEvents the EventBridge calls on that path.
	CriticalPathRequests  int `json:"critical_path_requests"`
	CriticalPathPutEvents int `json:"critical_path_put_events"`
	// ObservationsPerSeries is 1 for the session pattern, k for a burst.
	ObservationsPerSeries int `json:"observations_per_series"`
	// IdentityRecordWCUPerObs is the part of WCUPerObs spent writing
	// identity records: the states table's items whose sort key
	// (primitive) is "#identity", written in the identity's transaction
	// when one of its primitives enters or leaves multi_actor. Measured
	// by the probe from the items' sizes, by the capacity meter's rules.
	// IdentityRecordWrites is how many such writes the batch committed.
	IdentityRecordWCUPerObs float64 `json:"identity_record_wcu_per_obs"`
	IdentityRecordWrites    int     `json:"identity_record_writes"`
	// Operations is the batch's usage by DynamoDB operation.
	Operations map[string]Usage `json:"operations"`
}

// ItemSizes summarises the DynamoDB sizes of stored items of one kind.
type ItemSizes struct {
	History int    `json:"history"`
	Item    string `json:"item"` // ItemState, ItemObservation, ...
	Kind    string `json:"kind"`
	Count   int    `json:"count"`
	Min     int    `json:"min_bytes"`
	Mean    int    `json:"mean_bytes"`
	Max     int    `json:"max_bytes"`
}

// Results is everything Run measured.
type Results struct {
	// Rows are warm session-pattern rows of both designs.
	Rows []Row `json:"rows"`
	// ColdRows are the first batch of a fresh handler instance.
	ColdRows []Row `json:"cold_rows,omitempty"`
	// BurstRows are warm batches with several observations per series.
	BurstRows []Row `json:"burst_rows,omitempty"`
	// ShortRows are batches on series of a short prior history
	// (Config.ShortHistories).
	ShortRows []Row       `json:"short_rows,omitempty"`
	ItemSizes []ItemSizes `json:"item_sizes"`
	// Notes say exactly what was measured.
	Notes []string `json:"notes"`
}

// Run measures every cell of cfg against target.
func Run(ctx context.Context, target Target, cfg Config) (*Results, error) {
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	res := &Results{}
	res.Notes = append(res.Notes,
		fmt.Sprintf("Traffic: sessions end and emit one observation for each of %d primitives of one attacker; a batch of B holds the first B observations of consecutive sessions of attackers 0, 1, 2, ... (B=100: 40 + 40 + 20).", len(catalogue)),
		"Prior history H per series: sessions 1..H of each series the batches touch. Each design runs on its own attackers with identical values, timestamps and sessions, so both see the same series.",
		"The incremental design's history is its series record, built from all H points with attribution.NewSeries, holding the newest observations inline as the design leaves them, with the older ones as observation items. The transactional design's history is the same record with nothing inline (it reads no observation item: a new one's condition tells). The full-recompute design's history is the H observation items of each series it reads, encoded by ddbstore and bulk-written, plus the same records.",
		"Short series: for each prior history in the short rows and each batch size, series of exactly that history (fresh attackers, a fresh handler) take one batch. The handler reads their records, so those rows measure write units, not warm reads.",
		"Warm: the handler instance has already processed a batch touching every series it is measured on. Cold: a fresh instance's first batch.",
		"Units are computed by internal/testrig/capacity from item sizes (DynamoDB's rules), not reported by the emulator. Requests count every API call, pages of a Query included.",
		"CPU is process CPU time (getrusage) around the handler call, on batches of the same shape run with the meter off (the meter's side reads would count otherwise), on this machine.",
		"The AWS APIs are moto's; `make bench` runs it with the launcher in internal/testrig/bench/moto.go, whose changes only make it faster (deep histories would otherwise take hours) and are checked against the store contract. Units and requests do not depend on the emulator: the meter computes them from the requests and the stored items.",
	)
	for i, h := range cfg.Histories {
		if target.Reset != nil && i > 0 {
			if err := target.Reset(ctx); err != nil {
				return nil, err
			}
		}
		if err := runHistory(ctx, target, cfg, h, res, logf); err != nil {
			return nil, fmt.Errorf("history %d: %w", h, err)
		}
	}
	if len(cfg.ShortHistories) > 0 {
		if target.Reset != nil && len(cfg.Histories) > 0 {
			if err := target.Reset(ctx); err != nil {
				return nil, err
			}
		}
		if err := runShort(ctx, target, cfg, res, logf); err != nil {
			return nil, fmt.Errorf("short series: %w", err)
		}
	}
	return res, nil
}

// shortGroups name the attackers of each short-series cell: one letter
// each, so that every group's items are the same size.
const shortGroups = "abcdeghjklmnopqrsuvwxyz"

// provision creates the template's tables under name, with the
// benchmark's registry, and the function's configuration from them.
func provision(ctx context.Context, target Target, name string) (*devstack.Stack, config.Config, error) {
	stack, err := devstack.Provision(ctx, devstack.NewClients(target.AWS), target.Template, devstack.Options{
		StackName:  name,
		Endpoint:   target.Endpoint,
		Parameters: map[string]string{"AttributionRegistry": RegistryOverrides()},
	})
	if err != nil {
		return nil, config.Config{}, fmt.Errorf("provision: %w", err)
	}
	env := stack.EnvMap()
	svcCfg, err := config.FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		return nil, config.Config{}, fmt.Errorf("configuration from the template: %w", err)
	}
	return stack, svcCfg, nil
}

// runShort measures one batch of each size on series of each short prior
// history, in both commit designs.
func runShort(ctx context.Context, target Target, cfg Config, res *Results, logf func(string, ...any)) error {
	stack, svcCfg, err := provision(ctx, target, "bench-short")
	if err != nil {
		return err
	}
	loader := &HistoryLoader{
		Client: dynamodb.NewFromConfig(target.AWS), Tables: tables(svcCfg),
		Registry: svcCfg.Registry, Thresholds: svcCfg.Thresholds, ObservationTTL: svcCfg.ObservationTTL,
	}
	group := 0
	for _, d := range []Design{Incremental, Transactional} {
		for _, h := range cfg.ShortHistories {
			for _, b := range slices.Sorted(slices.Values(cfg.Batches)) {
				if group == len(shortGroups) {
					return fmt.Errorf("more than %d short-series cells", len(shortGroups))
				}
				w := NewWorkload(shortGroups[group : group+1])
				group++
				if cfg.Noise >= 0 {
					w.Noise = cfg.Noise
				}
				loader.Inline = d == Incremental
				if err := loader.Load(ctx, w, SessionSeries(b), h, nil); err != nil {
					return err
				}
				r := &rig{aws: target.AWS, cfg: svcCfg, probe: newProbe(), queueARN: stack.ARN(devstack.ObservationQueueID), design: d, history: h}
				r.meter = capacity.New(dynamodb.NewFromConfig(target.AWS))
				r.probe.sizeWrites(dynamodb.NewFromConfig(target.AWS), svcCfg.StatesTable, svcCfg.ObservationsTable)
				for i := 0; i < 8; i++ {
					r.probe.know(w.Attacker(i), w.Identity(i))
				}
				handler, err := r.handler()
				if err != nil {
					return err
				}
				row, err := r.metered(ctx, handler, w.SessionBatch(b, h+1), 1)
				if err != nil {
					return fmt.Errorf("%s, prior history %d, batch %d: %w", d, h, b, err)
				}
				res.ShortRows = append(res.ShortRows, row)
			}
			logf("short series: %s: prior history %d measured", d, h)
		}
	}
	return nil
}

// fullBatches returns the batch sizes the full-recompute design runs at
// history h.
func (c Config) fullBatches(h int) []int {
	if bs, ok := c.FullRecompute[h]; ok {
		return bs
	}
	return c.Batches
}

func runHistory(ctx context.Context, target Target, cfg Config, h int, res *Results, logf func(string, ...any)) error {
	stack, svcCfg, err := provision(ctx, target, fmt.Sprintf("bench-h%d", h))
	if err != nil {
		return err
	}
	incr, trans, full := NewWorkload("i"), NewWorkload("t"), NewWorkload("f")
	if cfg.Noise >= 0 {
		incr.Noise, trans.Noise, full.Noise = cfg.Noise, cfg.Noise, cfg.Noise
	}
	plans := []struct {
		design  Design
		w       Workload
		batches []int
	}{
		{Incremental, incr, slices.Sorted(slices.Values(cfg.Batches))},
		{Transactional, trans, slices.Sorted(slices.Values(cfg.Batches))},
		{FullRecompute, full, slices.Sorted(slices.Values(cfg.fullBatches(h)))},
	}
	loader := &HistoryLoader{
		Client:         dynamodb.NewFromConfig(target.AWS),
		Tables:         tables(svcCfg),
		Registry:       svcCfg.Registry,
		Thresholds:     svcCfg.Thresholds,
		ObservationTTL: svcCfg.ObservationTTL,
	}
	for _, p := range plans {
		if len(p.batches) == 0 {
			continue
		}
		maxB := p.batches[len(p.batches)-1]
		series := SessionSeries(maxB)
		items := map[Series]bool{}
		if p.design == FullRecompute {
			for _, s := range series {
				items[s] = true
			}
		}
		for _, b := range cfg.Bursts {
			for _, s := range BurstSeries(b.Batch, b.PerSeries, b.PrimitivesPerAttacker) {
				if !slices.Contains(series, s) && p.design == Incremental {
					series = append(series, s)
				}
			}
		}
		start := time.Now()
		loader.Inline = p.design == Incremental
		if err := loader.Load(ctx, p.w, series, h, items); err != nil {
			return err
		}
		logf("history %d: %s: %d series, %d observation items stored in %s", h, p.design, len(series), len(items)*h, time.Since(start).Round(time.Millisecond))
	}
	if fb := cfg.fullBatches(h); len(fb) < len(cfg.Batches) {
		res.Notes = append(res.Notes, fmt.Sprintf("History %d: the full-recompute design ran at batch sizes %v only: it reads history × batch stored items per batch (%d items at batch %d), which the local emulator serves at about 0.3 ms an item.",
			h, fb, h*slices.Max(cfg.Batches), slices.Max(cfg.Batches)))
	}
	var written []ItemSizes // observation items the incremental handler wrote
	for _, p := range plans {
		if len(p.batches) == 0 {
			continue
		}
		r := &rig{aws: target.AWS, cfg: svcCfg, probe: newProbe(), queueARN: stack.ARN(devstack.ObservationQueueID), design: p.design, history: h}
		r.meter = capacity.New(dynamodb.NewFromConfig(target.AWS))
		r.probe.sizeWrites(dynamodb.NewFromConfig(target.AWS), svcCfg.StatesTable, svcCfg.ObservationsTable)
		for i := 0; i < 8; i++ {
			r.probe.know(p.w.Attacker(i), p.w.Identity(i))
		}
		if err := r.runDesign(ctx, cfg, p.w, p.batches, res, logf); err != nil {
			return fmt.Errorf("%s: %w", p.design, err)
		}
		if p.design == Incremental {
			written = writtenSizes(r.probe.writtenObservations(), h, svcCfg.Registry)
		}
	}
	sizes, err := storedSizes(ctx, dynamodb.NewFromConfig(target.AWS), tables(svcCfg), incr, full, SessionSeries(slices.Max(cfg.Batches)), h, svcCfg.Registry)
	if err != nil {
		return err
	}
	res.ItemSizes = append(res.ItemSizes, sizes...)
	res.ItemSizes = append(res.ItemSizes, written...)
	return nil
}

func tables(c config.Config) ddbstore.Tables {
	return ddbstore.Tables{Identities: c.IdentitiesTable, Observations: c.ObservationsTable, States: c.StatesTable}
}

// rig runs one design's handlers at one history level.
type rig struct {
	aws      aws.Config
	cfg      config.Config
	meter    *capacity.Meter
	probe    *probe
	queueARN string
	design   Design
	history  int
	session  int // last session number used
}

func (r *rig) handler() (*sqshandler.Handler, error) {
	h, err := wiring.New(r.cfg, r.aws, wiring.Options{
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
		MetricsOut:         io.Discard,
		FunctionName:       "bench",
		DynamoDBOptions:    []func(*dynamodb.Options){r.meter.Option(), r.probe.dynamoDBOption},
		EventBridgeOptions: []func(*eventbridge.Options){r.probe.eventBridgeOption},
	})
	if err != nil {
		return nil, err
	}
	h.Processor.Design = r.design.commitDesign()
	h.Processor.FullRecompute = r.design == FullRecompute
	return h, nil
}

// nextSessions reserves n session numbers after the history.
func (r *rig) nextSessions(n int) int {
	if r.session == 0 {
		r.session = r.history
	}
	first := r.session + 1
	r.session += n
	return first
}

func (r *rig) runDesign(ctx context.Context, cfg Config, w Workload, batches []int, res *Results, logf func(string, ...any)) error {
	maxB := batches[len(batches)-1]
	start := time.Now()
	// Cold: a fresh instance per smaller batch size; the instance that
	// takes the largest batch first is then the warm one.
	if cfg.Cold {
		for _, b := range batches[:len(batches)-1] {
			h, err := r.handler()
			if err != nil {
				return err
			}
			row, err := r.metered(ctx, h, w.SessionBatch(b, r.nextSessions(1)), 1)
			if err != nil {
				return fmt.Errorf("cold batch %d: %w", b, err)
			}
			res.ColdRows = append(res.ColdRows, row)
		}
	}
	h, err := r.handler()
	if err != nil {
		return err
	}
	row, err := r.metered(ctx, h, w.SessionBatch(maxB, r.nextSessions(1)), 1)
	if err != nil {
		return fmt.Errorf("warm-up batch %d: %w", maxB, err)
	}
	if cfg.Cold {
		res.ColdRows = append(res.ColdRows, row)
	}
	warm := make(map[int]int) // batch size → index in res.Rows
	for _, b := range batches {
		row, err := r.metered(ctx, h, w.SessionBatch(b, r.nextSessions(1)), 1)
		if err != nil {
			return fmt.Errorf("warm batch %d: %w", b, err)
		}
		warm[b] = len(res.Rows)
		res.Rows = append(res.Rows, row)
	}
	// timedShapes are the warm shapes to time once metered: a batch maker
	// and the row that takes the times.
	type shape struct {
		batch    int
		perBatch int // session numbers one batch takes
		make     func(first int) []attribution.Observation
		row      func() *Row
	}
	var shapes []shape
	for _, b := range batches {
		i := warm[b]
		shapes = append(shapes, shape{b, 1, func(first int) []attribution.Observation { return w.SessionBatch(b, first) }, func() *Row { return &res.Rows[i] }})
	}
	warmSeries := SessionSeries(maxB)
	for _, bu := range cfg.Bursts {
		covered := true
		for _, s := range BurstSeries(bu.Batch, bu.PerSeries, bu.PrimitivesPerAttacker) {
			covered = covered && slices.Contains(warmSeries, s)
		}
		if !covered {
			continue
		}
		burst := func(first int) []attribution.Observation {
			return w.BurstBatch(bu.Batch, bu.PerSeries, bu.PrimitivesPerAttacker, first)
		}
		row, err := r.metered(ctx, h, burst(r.nextSessions(bu.PerSeries)), bu.PerSeries)
		if err != nil {
			return fmt.Errorf("burst batch %d: %w", bu.Batch, err)
		}
		i := len(res.BurstRows)
		res.BurstRows = append(res.BurstRows, row)
		shapes = append(shapes, shape{bu.Batch, bu.PerSeries, burst, func() *Row { return &res.BurstRows[i] }})
	}
	if cfg.TimedObservations > 0 {
		r.probe.paused.Store(true)
		defer r.probe.paused.Store(false)
		for _, sh := range shapes {
			reps := max(1, cfg.TimedObservations/sh.batch)
			if r.design == FullRecompute && cfg.TimedItemReads > 0 {
				reads := r.history * sh.batch / sh.perBatch // stored items one batch reads
				reps = max(1, min(reps, cfg.TimedItemReads/reads))
			}
			var cpu, wall time.Duration
			for range reps {
				c, t, err := r.timed(ctx, h, sh.make(r.nextSessions(sh.perBatch)))
				if err != nil {
					return fmt.Errorf("timed batch %d: %w", sh.batch, err)
				}
				cpu += c
				wall += t
			}
			row := sh.row()
			row.CPUMicrosPerObs = float64(cpu.Microseconds()) / float64(reps*sh.batch)
			row.WallMillisPerBatch = float64(wall.Microseconds()) / 1000 / float64(reps)
		}
	}
	logf("history %d: %s: batches %v measured in %s", r.history, r.design, batches, time.Since(start).Round(time.Millisecond))
	return nil
}

// metered processes one batch with the meter on and returns its row.
func (r *rig) metered(ctx context.Context, h *sqshandler.Handler, obs []attribution.Observation, perSeries int) (Row, error) {
	ev, err := SQSEvent(obs, r.queueARN)
	if err != nil {
		return Row{}, err
	}
	r.meter.Reset()
	r.probe.reset()
	if err := handle(ctx, h, ev); err != nil {
		return Row{}, err
	}
	snap := r.meter.Snapshot()
	if snap.Incomplete > 0 {
		return Row{}, fmt.Errorf("the capacity meter could not size %d requests: %w", snap.Incomplete, snap.Err)
	}
	critical, unattributed, ebCritical, entries := r.probe.counts()
	if unattributed > 0 {
		return Row{}, fmt.Errorf("%d DynamoDB requests served no known identity", unattributed)
	}
	if err := r.probe.sizingErr(); err != nil {
		return Row{}, fmt.Errorf("the probe could not size the identity records written: %w", err)
	}
	identityWCU, identityWrites := r.probe.identityRecords()
	n := float64(len(obs))
	row := Row{
		Design:                   r.design,
		History:                  r.history,
		Batch:                    len(obs),
		RequestsPerObs:           float64(snap.Total.Requests) / n,
		RCUPerObs:                snap.Total.RCU / n,
		WCUPerObs:                snap.Total.WCU / n,
		EventBridgeEntriesPerObs: float64(entries) / n,
		CriticalPathRequests:     critical,
		CriticalPathPutEvents:    ebCritical,
		ObservationsPerSeries:    perSeries,
		IdentityRecordWCUPerObs:  identityWCU / n,
		IdentityRecordWrites:     identityWrites,
		Operations:               map[string]Usage{},
	}
	for name, u := range snap.Operations {
		row.Operations[name] = Usage{Requests: u.Requests, RCU: u.RCU, WCU: u.WCU}
	}
	return row, nil
}

// timed processes one batch with the meter off and returns the CPU and
// wall time of the handler call.
func (r *rig) timed(ctx context.Context, h *sqshandler.Handler, obs []attribution.Observation) (cpu, wall time.Duration, err error) {
	ev, err := SQSEvent(obs, r.queueARN)
	if err != nil {
		return 0, 0, err
	}
	runtime.GC() // leave the set-up's garbage out of the batch
	c0, t0 := processCPU(), time.Now()
	err = handle(ctx, h, ev)
	return processCPU() - c0, time.Since(t0), err
}

func handle(ctx context.Context, h *sqshandler.Handler, ev events.SQSEvent) error {
	resp, err := h.Handle(ctx, ev)
	if err != nil {
		return err
	}
	if n := len(resp.BatchItemFailures); n > 0 {
		return fmt.Errorf("%d of %d messages failed (first %s)", n, len(ev.Records), resp.BatchItemFailures[0].ItemIdentifier)
	}
	return nil
}

// Item names of ItemSizes.
const (
	// ItemState is a series record (states table), incremental design.
	ItemState = "state"
	// ItemIdentityRecord is an identity record (the states table's
	// "#identity" item), incremental design, where one exists.
	ItemIdentityRecord = "identity record"
	// ItemObservation is a history observation item (session 1 of each
	// series), as the full-recompute design reads them; it carries no
	// events.
	ItemObservation = "observation"
	// ItemObservationWritten is every observation item the incremental
	// design's handler wrote in the metered batches.
	ItemObservationWritten = "observation written"
	// ItemObservationWithEvents is those of them that carry the events
	// they caused.
	ItemObservationWithEvents = "observation with events"
)

// sizeAcc accumulates item sizes by (item, kind).
type sizeAcc map[[2]string]*struct{ n, min, max, sum int }

func (accs sizeAcc) add(item, kind string, size int) {
	a := accs[[2]string{item, kind}]
	if a == nil {
		a = &struct{ n, min, max, sum int }{min: size}
		accs[[2]string{item, kind}] = a
	}
	a.n++
	a.sum += size
	a.min = min(a.min, size)
	a.max = max(a.max, size)
}

func (accs sizeAcc) sizes(h int) []ItemSizes {
	var out []ItemSizes
	for k, a := range accs {
		out = append(out, ItemSizes{History: h, Item: k[0], Kind: k[1], Count: a.n, Min: a.min, Mean: a.sum / a.n, Max: a.max})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Item != out[j].Item {
			return out[i].Item > out[j].Item
		}
		return out[i].Kind < out[j].Kind
	})
	return out
}

// writtenSizes summarises the observation items a design's handler wrote,
// all of them and those carrying events, by kind.
func writtenSizes(written []writtenObservation, h int, reg attribution.Registry) []ItemSizes {
	accs := sizeAcc{}
	for _, w := range written {
		kind := string(reg.Kind(w.primitive))
		accs.add(ItemObservationWritten, kind, w.size)
		if w.events {
			accs.add(ItemObservationWithEvents, kind, w.size)
		}
	}
	return accs.sizes(h)
}

// storedSizes measures the state items of the incremental design's series
// and identities, and the observation items of the full-recompute
// design's history, by kind.
func storedSizes(ctx context.Context, client *dynamodb.Client, t ddbstore.Tables, incr, full Workload, series []Series, h int, reg attribution.Registry) ([]ItemSizes, error) {
	accs := sizeAcc{}
	add := accs.add
	attackers := map[int]bool{}
	for _, s := range series {
		if attackers[s.Attacker] {
			continue
		}
		attackers[s.Attacker] = true
		key := stateKey(attribution.SeriesKey{IdentityUUID: incr.Identity(s.Attacker), Primitive: identityItem})
		out, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: &t.States, Key: key, ConsistentRead: aws.Bool(true)})
		if err != nil {
			return nil, fmt.Errorf("read identity record of %s: %w", incr.Identity(s.Attacker), err)
		}
		if out.Item != nil {
			add(ItemIdentityRecord, "identity", itemsize.Item(out.Item))
		}
	}
	for _, s := range series {
		key := incr.Key(s)
		out, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: &t.States, Key: stateKey(key), ConsistentRead: aws.Bool(true)})
		if err != nil {
			return nil, fmt.Errorf("read state item %s: %w", key, err)
		}
		if out.Item == nil {
			return nil, errors.New("state item " + key.String() + " missing")
		}
		add(ItemState, string(reg.Kind(key.Primitive)), itemsize.Item(out.Item))
		fkey := full.Key(s)
		obs := full.Observation(s, 1)
		got, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: &t.Observations, Key: observationKey(fkey, obs.EvidenceRef), ConsistentRead: aws.Bool(true)})
		if err != nil {
			return nil, fmt.Errorf("read observation item %s: %w", fkey, err)
		}
		if got.Item != nil {
			add(ItemObservation, string(reg.Kind(key.Primitive)), itemsize.Item(got.Item))
		}
	}
	return accs.sizes(h), nil
}
