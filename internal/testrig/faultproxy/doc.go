// Package faultproxy is a fault-injecting HTTP proxy that sits on loopback
// between the AWS SDK and a local AWS endpoint (moto's server) in chaos tests.
//
// Point the SDK clients' BaseEndpoint at Proxy.URL; the proxy forwards every
// request to Config.Upstream and, according to its Rules, injects faults on
// the way. Requests are recognised by their X-Amz-Target header, as sent by
// the JSON protocols: DynamoDB ("DynamoDB_20120810.PutItem"), EventBridge
// ("AWSEvents.PutEvents") and SQS ("AmazonSQS.SendMessage"). Anything else is
// forwarded untouched.
//
// Faults, each with a rate between 0 and 1, per service and optionally per
// operation (see Rule):
//
//   - Throttle: HTTP 400 with the service's throttling error
//     (DynamoDB ThrottlingException, EventBridge ThrottlingException,
//     SQS RequestThrottled). The upstream never sees the request.
//   - ProvisionedThroughputExceeded (DynamoDB only): HTTP 400
//     ProvisionedThroughputExceededException.
//   - InternalError: HTTP 500 (DynamoDB InternalServerError, EventBridge
//     InternalException, SQS InternalError).
//   - DropBeforeForward: the connection is closed without a response and the
//     request never reaches the upstream.
//   - DropAfterForward: the request is applied by the upstream, then the
//     connection is closed without a response: a write that succeeded but
//     whose answer was lost.
//   - Delay: the request waits DelayDuration before it is handled further.
//     Independent of the other faults.
//   - FailEntry (EventBridge PutEvents only): each entry fails with this
//     rate. Failed entries are removed from the request before it is
//     forwarded, so they are really not delivered; the upstream response is
//     merged back so that Entries holds one result per original entry, in
//     the original order, the injected ones as ErrorCode "InternalFailure",
//     and FailedEntryCount counts them. When every entry fails the request
//     is not forwarded at all.
//
// The whole-request faults (Throttle, ProvisionedThroughputExceeded,
// InternalError, DropBeforeForward, DropAfterForward) exclude each other: at
// most one happens per request, so their rates in one Rule add up to at most
// 1. FailEntry applies only to PutEvents requests that drew none of them.
//
// A dropped connection reaches the SDK as a send error
// (smithy-go's transport/http.RequestSendError) with no HTTP response, which
// the SDK's standard retryer retries; an HTTP error reaches it as the
// service's modelled error type, such as dynamodb/types.ThrottlingException.
//
// Decisions are reproducible: the n-th request of an operation (counted per
// service and operation since Start) draws its faults from a random stream
// determined by Config.Seed, the operation and n alone. Sequential runs with
// the same seed see the same faults. Concurrent runs draw the same decisions
// per operation, so the same number of each whole-request fault, though which
// request gets which decision may vary with arrival order.
//
// Rewriting a PutEvents body invalidates the request's SigV4 signature. moto
// does not verify signatures, which is the only upstream this proxy is meant
// for; a real AWS endpoint would reject such requests.
package faultproxy
