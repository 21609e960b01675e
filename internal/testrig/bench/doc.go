// Package bench measures what one observation costs the attribution
// function: DynamoDB requests and capacity units, EventBridge entries and
// handler CPU time, for the incremental design and for the full-recompute
// design (attribution.Processor.FullRecompute, set on the wired function) side by side, against prior
// history of 10 to 10,000 observations per series; and the function's
// size and start-up under the Runtime Interface Emulator. `make bench`
// runs it through internal/testrig/cmd/bench.
//
// # Method
//
// Both designs run the real SQS handler built by wiring.New, with a
// capacity.Meter on its DynamoDB client and a probe (probe.go) on both
// clients. On the processing path the handler's only DynamoDB write is
// one TransactWriteItems per identity and batch: the observation items
// (each keeping the events it caused, when it caused some, so that a
// redelivery publishes them again with the same IDs; nothing is
// acknowledged after publishing), the series records, and the identity
// record (the states table's "#identity" item) when a primitive of the
// identity enters or leaves multi_actor. The meter counts the units of
// the transaction as a whole; the probe measures the identity-record part
// directly, from the item's size before and after by the meter's rules,
// so the report can split write units into observation + record pairs
// and identity records; it also records the observation items written,
// with and without events. Traffic follows sessions: when a session ends it emits one
// observation for each of ~40 primitives of its attacker (Catalogue), so a
// batch of B holds the first B observations of consecutive sessions of
// attackers 0, 1, 2, ... Bursts put several observations of one series in
// a batch.
//
// Prior history is stored directly (HistoryLoader), not through the
// handler: each series' record is built from its whole history with
// attribution.NewSeries and committed through ddbstore; the observation
// items are encoded by ddbstore and bulk-written, for the series the
// full-recompute design reads (the incremental design never reads them).
// The two designs run on separate attackers whose series are identical
// (Workload values depend on indices, not names).
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
