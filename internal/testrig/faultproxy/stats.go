package faultproxy

import (
	"sync"
	"sync/atomic"
)

// Fault is a kind of injected fault, as counted in Stats.
type Fault int

// Fault kinds. FaultFailedEntry counts PutEvents entries, the others count
// requests.
const (
	faultNone Fault = iota
	FaultDropBeforeForward
	FaultThrottle
	FaultProvisionedThroughputExceeded
	FaultInternalError
	FaultDropAfterForward
	FaultDelay
	FaultFailedEntry
	numFaults
)

var faultNames = [numFaults]string{
	faultNone:                          "none",
	FaultDropBeforeForward:             "drop_before_forward",
	FaultThrottle:                      "throttle",
	FaultProvisionedThroughputExceeded: "provisioned_throughput_exceeded",
	FaultInternalError:                 "internal_error",
	FaultDropAfterForward:              "drop_after_forward",
	FaultDelay:                         "delay",
	FaultFailedEntry:                   "failed_entry",
}

func (f Fault) String() string {
	if f < 0 || f >= numFaults {
		return "unknown"
	}
	return faultNames[f]
}

// Counts are the counters of the injector as a whole or of one operation.
type Counts struct {
	Requests       int64           // requests received
	Forwarded      int64           // requests the upstream answered
	UpstreamErrors int64           // forwards that got no answer from the upstream (a send error; 502 through a proxy)
	Faults         map[Fault]int64 // injected faults by kind; kinds never injected are absent
}

// Stats is a snapshot of the injector's counters.
type Stats struct {
	Counts               // totals
	ByOp   map[Op]Counts // per operation
}

// counters are the live, atomically updated counters behind Counts.
type counters struct {
	seq            atomic.Uint64 // requests numbered so far; drives the fault draws
	requests       atomic.Int64
	forwarded      atomic.Int64
	upstreamErrors atomic.Int64
	faults         [numFaults]atomic.Int64
}

func (c *counters) snapshot() Counts {
	out := Counts{
		Requests:       c.requests.Load(),
		Forwarded:      c.forwarded.Load(),
		UpstreamErrors: c.upstreamErrors.Load(),
	}
	for f := Fault(1); f < numFaults; f++ {
		if n := c.faults[f].Load(); n != 0 {
			if out.Faults == nil {
				out.Faults = make(map[Fault]int64)
			}
			out.Faults[f] = n
		}
	}
	return out
}

// statsTable holds the total and per-operation counters.
type statsTable struct {
	total counters
	mu    sync.RWMutex
	byOp  map[Op]*counters
}

// op returns the counters of op, creating them on first use.
func (t *statsTable) op(op Op) *counters {
	t.mu.RLock()
	c, ok := t.byOp[op]
	t.mu.RUnlock()
	if ok {
		return c
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.byOp[op]; ok {
		return c
	}
	if t.byOp == nil {
		t.byOp = make(map[Op]*counters)
	}
	c = new(counters)
	t.byOp[op] = c
	return c
}

func (t *statsTable) snapshot() Stats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := Stats{Counts: t.total.snapshot(), ByOp: make(map[Op]Counts, len(t.byOp))}
	for op, c := range t.byOp {
		s.ByOp[op] = c.snapshot()
	}
	return s
}

// tally updates the counters of one operation and the totals together.
type tally struct {
	total, op *counters
}

func (t tally) request() {
	t.total.requests.Add(1)
	t.op.requests.Add(1)
}

func (t tally) forwarded() {
	t.total.forwarded.Add(1)
	t.op.forwarded.Add(1)
}

func (t tally) upstreamError() {
	t.total.upstreamErrors.Add(1)
	t.op.upstreamErrors.Add(1)
}

func (t tally) fault(f Fault, n int64) {
	if n == 0 {
		return
	}
	t.total.faults[f].Add(n)
	t.op.faults[f].Add(n)
}
