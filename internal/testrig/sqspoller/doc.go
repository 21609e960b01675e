// Package sqspoller is a local stand-in for Lambda's SQS event source mapping,
// for tests and chaos runs.
//
// A [Mapping] runs one or more pollers against an SQS queue. Each poller
// receives a batch (up to Config.BatchSize messages, gathered over several
// ReceiveMessage calls within Config.MaximumBatchingWindow), turns it into an
// [events.SQSEvent] shaped as Lambda builds it, and hands it to an [Invoker]:
// a Go function ([FuncInvoker]) or a Runtime Interface Emulator / `sam local
// start-lambda` endpoint ([HTTPInvoker]).
//
// The response is interpreted as by a mapping with the
// ReportBatchItemFailures function response type:
//
//   - messages not named in BatchItemFailures are deleted;
//   - messages named there are left alone and reappear once their visibility
//     timeout expires;
//   - an invocation error, a panic, a function error returned by the
//     emulator, an unreadable response, or a BatchItemFailures entry whose
//     itemIdentifier is empty or not in the batch fails the whole batch: no
//     message is deleted.
//
// # Redrive
//
// A mapping does not move messages to a dead-letter queue itself: the queue
// does, as in SQS. The moto server (5.2.1) used by this project's tests
// enforces a queue's RedrivePolicy, as TestMotoEnforcesRedrivePolicy
// establishes with plain SQS calls: moto delivers a message at most
// maxReceiveCount times and, on the next ReceiveMessage after its visibility
// timeout expires, moves it to the dead-letter queue — same message ID, body
// and message attributes — instead of delivering it, which is what SQS
// documents. TestMotoWithoutRedrivePolicyKeepsRedelivering is the control.
// The move happens inside ReceiveMessage, so a message only moves when some
// consumer polls the source queue; a running Mapping does.
//
// The mapping reads the RedrivePolicy from the queue attributes when it starts
// and uses maxReceiveCount only to count [Stats].DeadLettered: messages that
// failed on their last allowed receive and so go to the dead-letter queue.
//
// # Differences from Lambda
//
// A message whose visibility timeout expires while its batch is still being
// gathered (a batching window longer than the visibility timeout) is received
// again; it stays in the batch once, with its latest receipt handle.
//
// There is no scaling of pollers (Config.Pollers is fixed), no
// MaximumConcurrency, no payload trimming (a batch stops growing once its
// bodies reach 6 MB, but is not cut back under that limit), and no backoff
// after function errors beyond the queue's visibility timeout.
package sqspoller
