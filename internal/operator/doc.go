// Package operator holds the operators' tasks behind the attribution command:
// sending observation files to the queue (Sender), reading one identity's
// states (StateReader) and recomputing every state from the stored
// observations after a threshold or registry change (Rebuilder), with a
// resumable checkpoint and a terminal progress bar.
//
// It talks to AWS through narrow interfaces shaped like the SDK clients'
// own methods and through the attribution ports (Store, Publisher), so the
// tasks run against DynamoDB, SQS and EventBridge, against moto in tests,
// or against in-memory doubles.
//
// Errors name the resource they concern: a call on a table, queue or bus
// that does not exist fails with a *MissingResourceError.
package operator
