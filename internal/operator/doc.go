// Package operator holds the operators' tasks behind the attribution command:
// sending observation files to the queue (Sender), reading one identity's
// states (StateReader) and recomputing every state from the stored
// observations after a threshold or registry change (Rebuilder), with a
// resumable checkpoint and a terminal progress bar.
//
// It reads and writes the tables only through the attribution ports
// (Store, Identities, Publisher) and small interfaces of its own
// (SeriesScanner, StateStore) that ddbstore satisfies, so the layout of
// the tables stays ddbstore's; it sends to the queue through an interface
// shaped like the SQS client's own methods. The tasks run against AWS,
// against moto in tests, or against in-memory doubles.
//
// Errors name the resource they concern: a call on a table, queue or bus
// that does not exist fails with a *MissingResourceError.
package operator
