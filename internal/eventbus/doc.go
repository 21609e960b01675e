// Package eventbus publishes the attribution domain's outbox events to an
// Amazon EventBridge bus. It implements attribution.Publisher.
//
// Every event becomes one PutEvents entry with Source
// attribution.EventSource, the event's DetailType and its JSON Detail.
// Entries are sent in the order given, at most MaxEntriesPerCall per call
// and at most MaxRequestBytes per call (sized as EventBridge sizes them).
//
// The result of every entry is checked. Entries rejected with a retryable
// code (InternalFailure, ThrottlingException), and whole calls that failed
// in a retryable way (throttling, server errors, connection errors), are
// sent again with exponential backoff and full jitter, up to
// Config.MaxAttempts requests per entry. Each request is made with the
// SDK's own retryer limited to a single attempt, so Config.MaxAttempts is
// the true bound. Entries rejected with any other code are permanent
// failures: they are logged and reported, never retried.
//
// Publish returns nil when every event was accepted, an
// *attribution.PublishError listing the events that were not (each marked
// Retryable or not), or a plain error when the outcome of a call is unknown.
package eventbus
