// Package capacity meters the read and write capacity units (RCU, WCU) that
// DynamoDB would charge for the requests a client makes, computed from
// DynamoDB's documented item-size rules rather than taken from the service's
// ConsumedCapacity (which a local emulator reports as a constant).
//
// # Use
//
// A Meter is smithy middleware attached to an aws-sdk-go-v2 DynamoDB client.
// It needs a second, un-metered client for its side reads:
//
//	meter := capacity.New(dynamodb.NewFromConfig(cfg))
//	client := dynamodb.NewFromConfig(cfg, meter.Option())
//	... use client ...
//	s := meter.Snapshot() // s.Operations["PutItem"].WCU, s.Total.RCU, ...
//	meter.Reset()
//
// It counts, per API operation name, the calls made (a call retried by the
// SDK counts once), and the units consumed. It never changes the caller's
// request, output or error.
//
// # Item size
//
// Source: Amazon DynamoDB Developer Guide, "DynamoDB item sizes and formats"
// and "Constraints" (1 KB = 1024 bytes). The size of an item is the sum, over
// its attributes, of the UTF-8 length of the attribute name plus the size of
// the value:
//
//   - String: its UTF-8 length in bytes.
//   - Number: an approximation, as the guide gives one: one byte for every two
//     significant digits (rounded up) plus one byte. Significant digits are the
//     mantissa digits once the sign, the decimal point, any exponent, and
//     leading and trailing zeros are removed; zero has none and weighs 1 byte.
//     So 7 and 100 weigh 2 bytes, 12345 weighs 4, -0.0012 weighs 2. The real
//     encoding (base-100 digit pairs aligned on the decimal point, a sign
//     terminator) can differ by a byte; the sign is not counted here.
//   - Binary: the number of raw bytes (not the base64 text).
//   - Boolean and Null: 1 byte.
//   - List and Map: 3 bytes of overhead, plus for each element its value size
//     and 1 byte of per-element overhead; a Map element also adds the UTF-8
//     length of its key. An empty List or Map weighs 3 bytes.
//   - String, Number and Binary sets: the sum of their elements' sizes (the
//     guide gives no overhead for sets).
//
// # Units
//
// Source: Developer Guide, "DynamoDB read and write operations" (capacity unit
// consumption), "Amazon DynamoDB Transactions: How it works" (capacity
// management), and the guide's notes on conditional writes (failed
// conditions still consume write units).
//
// Writes: one WCU per started 1 KB of item size, at least one.
//   - PutItem: the larger of the item it replaces (if any) and the new item.
//   - UpdateItem: the larger of the item before and after the update (the
//     whole item, however few attributes change).
//   - DeleteItem: the deleted item; deleting a missing item costs 1.
//   - A conditional write whose condition fails still consumes units, sized
//     by the existing item (1 if there is none).
//   - BatchWriteItem: each request as the single write it stands for;
//     requests returned in UnprocessedItems cost nothing.
//   - TransactWriteItems: each action rounded on its own, then doubled (a
//     prepare and a commit phase). A ConditionCheck is a read: twice a
//     strongly consistent read of its item.
//
// Reads: one RCU per started 4 KB read strongly consistently, half that
// eventually consistently (the default), and never less than one such unit
// (0.5 or 1) per request, even for an item that does not exist.
//   - GetItem: the whole item; a projection does not reduce the units.
//   - BatchGetItem: each requested item rounded on its own (a missing one
//     costs the minimum); keys returned in UnprocessedKeys cost nothing.
//   - Query and Scan: the sizes of all items read for the page, before any
//     filter and without any projection, summed and then rounded once per
//     request.
//   - TransactGetItems: twice a strongly consistent read of each item.
//
// Not documented, estimated here: the charge of a ConditionCheck is not
// spelled out, and is counted as the transactional read it performs. A
// TransactWriteItems cancelled because a condition failed is charged its
// prepare phase only, each action once against its item as it stands (write
// actions as failed conditional writes, ConditionChecks as strongly
// consistent reads). A transaction cancelled for any other reason, and every
// other failed request, is charged nothing.
// Control-plane operations (CreateTable, DescribeTable, ...) count as
// requests with no units. PartiQL operations (ExecuteStatement,
// BatchExecuteStatement, ExecuteTransaction) count as requests without units
// and mark the snapshot incomplete.
//
// # How item sizes are obtained
//
// The middleware sees each request's input and its output or error. What
// they lack, it reads through the un-metered side client, with strongly
// consistent GetItem calls on the key, under a context marked so that no
// meter counts them:
//
//   - PutItem, DeleteItem: the stored item is read before the request, unless
//     the request asks for ReturnValues ALL_OLD, in which case the output
//     says it atomically.
//   - UpdateItem: the item is read before (unless ReturnValues is ALL_OLD)
//     and after (unless ReturnValues is ALL_NEW).
//   - A failed condition: the item returned with the error if the request
//     asked for it (ReturnValuesOnConditionCheckFailure), else the item read
//     before, else a read after the failure (which left it unchanged).
//   - BatchWriteItem, TransactWriteItems: every targeted item is read before;
//     transactional updates are read again after.
//   - GetItem, BatchGetItem, TransactGetItems with a projection: the whole
//     item is read after.
//   - Query and Scan with a filter, a projection, or a Select other than all
//     (projected) attributes: the same page is read again (same key
//     condition, index, segment, start key, limit, order and consistency)
//     without filter and projection, and its items are sized. On an index
//     the items are then the index entries, as DynamoDB charges them.
//
// To extract the key of a put item, the meter asks DescribeTable once per
// table name and caches the key schema.
//
// Limits. The side reads are not atomic with the request: a concurrent
// writer changing the same item, or the items of a page, between the side
// read and the request makes the count off by that change. Side reads add
// latency to metered calls, so time benchmarks apart from metered runs; and
// against the real service they consume real capacity of their own. A Query
// on a local secondary index that fetches non-projected attributes from the
// table is charged only for the index entries. A side read that fails leaves
// its request's units as a lower bound and is reported by
// Snapshot.Incomplete and Snapshot.Err; the caller's request is unaffected.
//
// A shadow map of item sizes learnt from traffic was not chosen: it is wrong
// for items written by anyone else or before the meter started, and for
// updates, whose result the meter would have to evaluate itself.
package capacity
