// Package bench measures what one observation costs the attribution
// function: DynamoDB requests and capacity units, EventBridge entries and
// handler CPU time, for three designs side by side: incremental (the
// deployed one: each series record is the commit point of its series and
// holds its newest observations inline), transactional (each observation
// item written with its record in one transaction, the store's first
// design, attribution.Transactional) and full recompute (the reference
// worker's, attribution.Processor.FullRecompute, on the transactional
// commit), against prior history of 10 to 10,000 observations per series
// and on short series; and the function's size and start-up under the
// Runtime Interface Emulator. `make bench` runs it through
// internal/testrig/cmd/bench.
//
// # Method
//
// Every design runs the real SQS handler built by wiring.New, with its
// processor's design set, a capacity.Meter on its DynamoDB client and a
// probe (probe.go) on both clients. The meter counts the units of every
// request; the probe measures the identity-record part of transactions
// directly, from the item's size before and after by the meter's rules,
// so the report can split write units into series records with
// observation items and identity records, and counts the round trips one
// identity's observations wait on (a run of writes of one kind, which the
// processor sends in parallel, is one; each read is one).
//
// Traffic follows sessions: when a session ends it emits one
// observation for each of ~40 primitives of its attacker (Catalogue), so a
// batch of B holds the first B observations of consecutive sessions of
// attackers 0, 1, 2, ... Bursts put several observations of one series in
// a batch.
//
// Prior history is stored directly (HistoryLoader), not through the
// handler, as each design would have left it: each series' record is
// built from its whole history with attribution.NewSeries and committed
// through ddbstore, for the incremental design with its newest
// observations inline and the rest as items; the observation items are
// encoded by ddbstore and bulk-written. The designs run on separate
// attackers whose series are identical (Workload values depend on
// indices, not names).
//
// For each design and history: a fresh handler per smaller batch size
// gives the cold rows; a fresh handler takes the largest batch (its cold
// row) and is then warm for every batch size (the warm rows) and the
// bursts. The same warm handler then processes batches of the same shapes
// with the meter off (the meter's side reads would cost CPU), timed with
// getrusage.
//
// Report, Checks and WriteCostMarkdown turn the figures into the printed
// tables, the targets' status and the cost model.
//
// # Emulator
//
// moto stands in for AWS. StartFastMoto runs it with a launcher that keeps
// deep histories tractable without changing what clients see (see
// fastMotoLauncher); the units do not depend on it, since the meter
// computes them from requests and stored items.
package bench
