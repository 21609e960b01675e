// Package faultproxy injects AWS faults into the HTTP requests of the AWS
// SDK in chaos tests against a local AWS endpoint (moto's server).
//
// An [Injector] is an http.RoundTripper: give the SDK its client
// (aws.Config.HTTPClient = injector.Client()) and it sends every request
// on to the endpoint and, according to its Rules, injects faults on the
// way. A process that cannot be handed a client (a function under the
// Lambda emulator, a product binary) reaches the endpoint through a
// [Proxy] instead: a loopback server in front of the endpoint that sends
// every request through an Injector; point the process's AWS endpoint at
// Proxy.URL. The faults are the same either way, and so are the
// injector's counts.
//
// Requests are recognised by their X-Amz-Target header, as sent by the
// JSON protocols: DynamoDB ("DynamoDB_20120810.PutItem"), EventBridge
// ("AWSEvents.PutEvents") and SQS ("AmazonSQS.SendMessage"). Anything else
// is sent on untouched.
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
//   - DropBeforeForward: the request never reaches the endpoint and gets no
//     response: the injector returns an error, the proxy closes the
//     connection.
//   - DropAfterForward: the request is applied by the endpoint, then its
//     response is thrown away and the request gets none, as above: a write
//     that succeeded but whose answer was lost.
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
// A dropped request reaches the SDK as a send error
// (smithy-go's transport/http.RequestSendError) with no HTTP response, which
// the SDK's standard retryer retries; an HTTP error reaches it as the
// service's modelled error type, such as dynamodb/types.ThrottlingException.
//
// Decisions are reproducible: the n-th request of an operation (counted per
// service and operation since New) draws its faults from a random stream
// determined by Config.Seed, the operation and n alone. Sequential runs with
// the same seed see the same faults. Concurrent runs draw the same decisions
// per operation, so the same number of each whole-request fault, though which
// request gets which decision may vary with arrival order.
//
// An endpoint that cannot be reached answers the SDK as a send error
// through the injector, and as HTTP 502 through the proxy.
//
// Rewriting a PutEvents body invalidates the request's SigV4 signature. moto
// does not verify signatures, which is the only endpoint this package is
// meant for; a real AWS endpoint would reject such requests.
package faultproxy
