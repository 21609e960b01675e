package sqspoller

import "sync/atomic"

// Stats counts what a Mapping has done since it was created.
type Stats struct {
	// Batches is the number of invocations.
	Batches int64
	// Delivered is the number of messages handed to the function, counting
	// each delivery of a redelivered message.
	Delivered int64
	// Redelivered is the number of deliveries whose ApproximateReceiveCount
	// was above 1.
	Redelivered int64
	// Deleted is the number of messages deleted after a successful
	// invocation.
	Deleted int64
	// Failed is the number of messages the function reported in
	// BatchItemFailures (of invocations that did not fail as a whole).
	Failed int64
	// BatchErrors is the number of invocations that failed as a whole.
	BatchErrors int64
	// DeadLettered is the number of messages that failed (reported, or in a
	// failed batch) on their last allowed receive, ApproximateReceiveCount
	// >= the queue's maxReceiveCount. The queue moves them to its
	// dead-letter queue instead of delivering them again.
	DeadLettered int64
	// ReceiveErrors is the number of failed ReceiveMessage calls.
	ReceiveErrors int64
	// DeleteErrors is the number of messages that could not be deleted.
	DeleteErrors int64
}

type counters struct {
	batches, delivered, redelivered, deleted, failed atomic.Int64
	batchErrors, deadLettered                        atomic.Int64
	receiveErrors, deleteErrors                      atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Batches:       c.batches.Load(),
		Delivered:     c.delivered.Load(),
		Redelivered:   c.redelivered.Load(),
		Deleted:       c.deleted.Load(),
		Failed:        c.failed.Load(),
		BatchErrors:   c.batchErrors.Load(),
		DeadLettered:  c.deadLettered.Load(),
		ReceiveErrors: c.receiveErrors.Load(),
		DeleteErrors:  c.deleteErrors.Load(),
	}
}
