// Package bridge carries DECNET's bus to the attribution service and
// back: observations read from the bus are spooled on disk, then sent to
// the observation queue; the service's events, read from a publish-back
// queue, are published on the bus as DECNET's own attribution worker
// published them.
//
// An event counts as received once it is in the spool and synced to
// disk; it leaves the spool only when SQS acknowledged it. So an event
// the bridge accepted survives a queue that is unreachable for hours, a
// SIGKILL at any moment and a reboot: on start the bridge first sends
// what the spool holds. What the bus carries while the bridge is not
// reading is lost to it (the bus delivers at most once); DECNET's
// database still has those observations (see `attribution backfill`).
package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"decnet-attribution/internal/decnetbus"
)

// ObservationPattern subscribes to every observation on DECNET's bus.
const ObservationPattern = "attacker.observation.>"

// Defaults of Config.
const (
	DefaultSyncInterval    = 20 * time.Millisecond
	DefaultSummaryInterval = time.Minute
	DefaultDrainTimeout    = 10 * time.Second
)

// Config configures a Bridge.
type Config struct {
	SpoolDir   string
	Spool      SpoolOptions
	BusSocket  string
	ClientName string
	// Forward are extra bus patterns forwarded to the queue, besides
	// ObservationPattern.
	Forward  []string
	QueueURL string
	SQS      SendMessageBatchAPI
	// PublishBackQueueURL, when set, turns publish-back on; PublishBackSQS
	// is then required.
	PublishBackQueueURL string
	PublishBackSQS      ReceiveDeleteAPI
	PublishBackWait     time.Duration // long-poll wait; 0 means 20s
	SeenIDs             int

	Linger          time.Duration // 0: DefaultLinger; negative: none
	SyncInterval    time.Duration
	SummaryInterval time.Duration
	DrainTimeout    time.Duration // on stop, how long to keep sending
	MinBackoff      time.Duration // of the queue
	MaxBackoff      time.Duration
	BusMinBackoff   time.Duration
	BusMaxBackoff   time.Duration
	Logger          *slog.Logger
}

// Bridge is a running bridge.
type Bridge struct {
	cfg   Config
	log   *slog.Logger
	spool *Spool
	bus   *decnetbus.Client
	fwd   *forwarder
	back  *publishBack

	read, refused, unspoolable atomic.Int64
	lastRefusalLog             atomic.Int64 // unix nanos
}

// Stats is a bridge's counters.
type Stats struct {
	Received       int64 // EVT frames read from the bus
	Spooled        int64 // of those, synced into the spool: accepted
	Refused        int64 // not accepted: spool full (refuse-new)
	Dropped        int64 // accepted, then discarded by drop-oldest
	Unspoolable    int64 // empty or oversized bodies
	Sent           int64 // acknowledged by SQS
	Failed         int64 // send attempts that failed (entries), retried
	Rejected       int64 // refused by SQS as malformed, in the rejected file
	SpoolDepth     int64
	SpoolBytes     int64
	BusConnected   bool
	BusConnects    int64
	Published      int64 // published back on the bus
	DuplicateBack  int64 // publish-back events already published
	InvalidBack    int64
	PublishFailure int64
}

// New opens the spool and prepares the bridge.
func New(cfg Config) (*Bridge, error) {
	if cfg.SpoolDir == "" {
		return nil, errors.New("spool directory: not set")
	}
	if cfg.BusSocket == "" {
		return nil, errors.New("bus socket: not set")
	}
	if cfg.QueueURL == "" || cfg.SQS == nil {
		return nil, errors.New("observation queue: not set")
	}
	for _, p := range cfg.Forward {
		if err := checkPattern(p); err != nil {
			return nil, fmt.Errorf("--forward %q: %w", p, err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	if cfg.SummaryInterval <= 0 {
		cfg.SummaryInterval = DefaultSummaryInterval
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	cfg.Spool.Logger = cfg.Logger
	spool, err := OpenSpool(cfg.SpoolDir, cfg.Spool)
	if err != nil {
		return nil, err
	}
	b := &Bridge{cfg: cfg, log: cfg.Logger, spool: spool}
	b.bus = &decnetbus.Client{
		Path: cfg.BusSocket, Name: cfg.ClientName,
		Patterns:   append([]string{ObservationPattern}, cfg.Forward...),
		MinBackoff: cfg.BusMinBackoff, MaxBackoff: cfg.BusMaxBackoff,
		Logger: cfg.Logger,
	}
	b.fwd = &forwarder{
		spool: spool, client: cfg.SQS, queueURL: cfg.QueueURL,
		linger: max(cfg.Linger, 0), minBackoff: cfg.MinBackoff, maxBackoff: cfg.MaxBackoff,
		log: cfg.Logger, rejectPath: rejectedPath(cfg.SpoolDir),
	}
	if cfg.PublishBackQueueURL != "" {
		if cfg.PublishBackSQS == nil {
			spool.Close()
			return nil, errors.New("publish-back queue: no SQS client")
		}
		seen, err := openSeenIDs(cfg.SpoolDir, cfg.SeenIDs)
		if err != nil {
			spool.Close()
			return nil, fmt.Errorf("published event ids: %w", err)
		}
		wait := int32(20)
		if cfg.PublishBackWait > 0 {
			wait = int32(max(1, cfg.PublishBackWait/time.Second))
		}
		b.back = &publishBack{client: cfg.PublishBackSQS, queueURL: cfg.PublishBackQueueURL, bus: b.bus, seen: seen, wait: wait, log: cfg.Logger}
	}
	return b, nil
}

// checkPattern refuses patterns the bus could never match.
func checkPattern(p string) error {
	if p == "" {
		return errors.New("empty pattern")
	}
	for i, tok := range splitTokens(p) {
		if tok == "" {
			return errors.New("empty token")
		}
		if tok == ">" && i != len(splitTokens(p))-1 {
			return errors.New("'>' must be the last token")
		}
	}
	return nil
}

func splitTokens(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '.' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}

// Stats returns the counters now.
func (b *Bridge) Stats() Stats {
	sp := b.spool.Stats()
	st := Stats{
		Received: b.read.Load(), Spooled: sp.Synced, Refused: b.refused.Load(), Dropped: sp.Dropped,
		Unspoolable: b.unspoolable.Load(),
		Sent:        b.fwd.sent.Load(), Failed: b.fwd.failed.Load(), Rejected: b.fwd.rejected.Load(),
		SpoolDepth: sp.Depth, SpoolBytes: sp.Bytes,
		BusConnected: b.bus.Connected(), BusConnects: b.bus.Connects(),
	}
	if b.back != nil {
		st.Published, st.DuplicateBack = b.back.published.Load(), b.back.duplicates.Load()
		st.InvalidBack, st.PublishFailure = b.back.invalid.Load(), b.back.failed.Load()
	}
	return st
}

// Run runs the bridge until ctx ends: the spool's events are sent first
// (the forwarder starts before the bus is read), then the bus is read,
// spooled and forwarded. When ctx ends, the bus is left (BYE), the spool
// synced, and what it holds is sent for up to DrainTimeout; the rest
// waits in the spool for the next start.
func (b *Bridge) Run(ctx context.Context) error {
	defer b.spool.Close()
	if b.back != nil {
		defer b.back.seen.close()
	}
	if d := b.spool.Stats().Depth; d > 0 {
		b.log.Info("bridge: sending what the spool holds from before", "events", d)
	}
	b.log.Info("bridge started", "spool", b.cfg.SpoolDir, "bus_socket", b.cfg.BusSocket, "patterns", b.bus.Patterns, "queue", b.cfg.QueueURL, "publish_back_queue", b.cfg.PublishBackQueueURL, "spool_max_bytes", b.spool.opts.MaxBytes, "when_full", string(b.spool.opts.WhenFull))

	fwdCtx, stopFwd := context.WithCancel(context.Background())
	defer stopFwd()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Add(1)
	go func() { defer wg.Done(); errs <- b.fwd.run(fwdCtx) }()

	busCtx, stopBus := context.WithCancel(ctx)
	defer stopBus()
	var busWG sync.WaitGroup
	busWG.Add(3)
	go func() { defer busWG.Done(); errs <- b.bus.Run(busCtx, b.accept) }()
	go func() { defer busWG.Done(); b.syncLoop(busCtx) }()
	go func() { defer busWG.Done(); b.summaryLoop(busCtx) }()
	if b.back != nil {
		busWG.Add(1)
		go func() { defer busWG.Done(); errs <- b.back.run(busCtx) }()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
		if runErr == nil {
			runErr = errors.New("bridge: a component stopped")
		}
	}
	stopBus()
	busWG.Wait()
	if err := b.spool.Sync(); err != nil {
		runErr = errors.Join(runErr, err)
	}
	// The forwarder finishes its batch, then drain sends what is left.
	stopFwd()
	wg.Wait()
	drainCtx, cancel := context.WithTimeout(context.Background(), b.cfg.DrainTimeout)
	defer cancel()
	if err := b.fwd.drain(drainCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		runErr = errors.Join(runErr, err)
	}
	b.summary("bridge stopped")
	return runErr
}

// accept spools one event read from the bus.
func (b *Bridge) accept(ev decnetbus.Event) {
	b.read.Add(1)
	err := b.spool.Append(ev.Body)
	switch {
	case err == nil:
	case errors.Is(err, ErrSpoolFull):
		n := b.refused.Add(1)
		now := time.Now().UnixNano()
		if last := b.lastRefusalLog.Load(); now-last > int64(10*time.Second) && b.lastRefusalLog.CompareAndSwap(last, now) {
			b.log.Error("spool full: refusing new events from the bus (refuse-new); they stay only in DECNET's database", "refused_total", n, "max_bytes", b.spool.opts.MaxBytes, "topic", ev.Topic)
		}
	default:
		b.unspoolable.Add(1)
		b.log.Error("event not spooled", "topic", ev.Topic, "bytes", len(ev.Body), "error", err)
	}
}

func (b *Bridge) syncLoop(ctx context.Context) {
	every(ctx, b.cfg.SyncInterval, func() {
		if err := b.spool.Sync(); err != nil {
			b.log.Error("spool sync failed", "error", err)
		}
	})
}

func (b *Bridge) summaryLoop(ctx context.Context) {
	every(ctx, b.cfg.SummaryInterval, func() { b.summary("bridge summary") })
}

// every calls fn each interval until ctx is done.
func every(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

func (b *Bridge) summary(msg string) {
	st := b.Stats()
	attrs := []any{
		"received", st.Received, "spooled", st.Spooled, "sent", st.Sent, "failed", st.Failed,
		"spool_depth", st.SpoolDepth, "spool_bytes", st.SpoolBytes, "bus_connected", st.BusConnected,
		"refused", st.Refused, "dropped", st.Dropped, "rejected", st.Rejected,
	}
	if st.Unspoolable > 0 {
		attrs = append(attrs, "unspoolable", st.Unspoolable)
	}
	if b.back != nil {
		attrs = append(attrs, "published_back", st.Published, "duplicate_back", st.DuplicateBack, "invalid_back", st.InvalidBack)
	}
	if e, _ := b.fwd.lastError.Load().(string); e != "" && st.Failed > 0 {
		attrs = append(attrs, "last_error", e)
	}
	b.log.Info(msg, attrs...)
}
