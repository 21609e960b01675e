// Package chaos proves, against a local AWS, that the attribution function
// neither loses nor duplicates anything when AWS misbehaves: it drives
// generated observation streams through the stack provisioned from
// template.yaml, with redeliveries, concurrent pollers, injected faults and
// crashes, and checks the outcome against the in-memory engine.
//
// # A run
//
// [Run] takes a [Scenario] and:
//
//  1. generates a stream ([Generate]): many attackers, a few hot ones,
//     interleaved categorical (some alternating, to raise multi_actor and
//     the identity suspicion), numeric and hash primitives, shuffled
//     arrival, producer redeliveries, amendments (same key, new content;
//     single-poller scenarios only) and malformed messages ([BadInputs]);
//     in the identity scenarios, DECNET's clusterer (see identities.go)
//     forms, links, merges (into the smaller uuid, so chains form),
//     unmerges and repeats identities among them, as bus envelopes
//     shuffled with the observations;
//  2. provisions its own copy of the template's resources, plus an "events"
//     queue fed by a catch-all rule on the bus;
//  3. sends the stream to the observation queue while an event source
//     mapping (internal/testrig/sqspoller) with the scenario's pollers invokes the
//     function: in process (a fleet of instances built with wiring.New,
//     as Lambda scales out) or the crash binary (crashfn) under the
//     Runtime Interface Emulator;
//  4. injects faults (internal/testrig/faultproxy) between the function and
//     AWS, as the SDK's HTTP client in process and as a loopback proxy for
//     the crash binary: DynamoDB throttles, 500s, slow answers, requests
//     dropped without an answer before and after they were applied; EventBridge whole-call and
//     per-entry failures, and outages long enough for the publisher to give
//     up; failed dead-letter sends;
//  5. crashes the function at the crash points of package crash: after a
//     commit (the observations are stored with the events they caused,
//     nothing is published), after a membership change is stored (its
//     transitions and rekeyed events are in the outboxes, unpublished), and
//     after the bus accepted a batch's events but before the batch is
//     reported. Either way the queue redelivers
//     the batch, which finds its observations stored and publishes their
//     events again, with the same IDs. In process the instance dies (no
//     further request leaves it, its batch fails as a whole and a cold
//     instance takes the redelivery); under the emulator the process
//     exits;
//  6. collects the events, the alerts, the dead letters, the function's
//     log and the stored states, and checks them ([Verdicts]).
//
// # What is checked
//
// The expected outcome is the in-memory engine's replay ([Replay]) of the
// observations in the order DynamoDB applied them: all DynamoDB requests
// pass one at a time through a journal at the endpoint (see linearizer),
// which records every applied TransactWriteItems, including those whose
// answer the fault injector dropped; a membership change is replayed as the
// identity event that made it (read back from the attacker's new stamp, or
// the loser's parent stamp), a formed event narrowed to the attacker it
// moved. Then:
//
//   - every delivered event, deduplicated by event_id, is exactly one of
//     the replay's, with the same detail (numbers within 1e-9), and every
//     one of the replay's was delivered. Delivery is at least once: an
//     event_id may arrive more than once (an exact redelivery, as after a
//     crash past PutEvents), never with a new ID;
//   - per series the state_changed events form an unbroken chain by
//     sequence (first old_state null, each old_state the previous
//     new_state, no gap) ending in the stored state; suspicions are
//     numbered without gaps and the last names the primitives stored as
//     multi_actor;
//   - every delivery of one event_id carries the same detail, and no
//     transition is delivered under a second event_id
//     (duplicate_events_with_new_id);
//   - every stored state equals the replay's, and, without amendments,
//     also the replay of the send order (arrival order does not matter);
//   - observation_count never exceeds the distinct observations sent;
//   - the template's alert rule delivered exactly the events it matches;
//   - the dead-letter queue holds exactly the malformed messages, each with
//     the decoder's reason in its attributes or, when it came by the
//     redrive policy, in the function's log;
//   - with identity events: every attacker resolves, through the stored
//     records, to the canonical identity of the clusterer's final
//     membership; every canonical series is the reference merger over the
//     union of its attackers' observations (a from-scratch replay:
//     union_mismatches), and its observation_count their distinct number
//     (none lost or counted twice across a merge or an unmerge); the
//     rekeyed events of each identity are numbered without a gap up to the
//     count its record keeps; an identity event in the dead-letter queue
//     carries the reason the replay gives it (an unmerge applied before its
//     merge arrived), anything else there is lost;
//   - with one poller, the commits the function saw succeed are, per
//     attacker and in order, those DynamoDB applied; the sequential clean
//     scenario's transitions are also exactly the replay of the send order.
//
// [Report.Write] prints one summary per scenario with the verdicts
// lost, double_counted, unexpected_events, duplicate_events_with_new_id
// and dlq.
//
// # moto
//
// moto stands in for AWS. Its DynamoDB is not atomic under concurrent
// requests on its own (TransactWriteItems restores whole-table copies when
// a transaction is cancelled, undoing other clients' acknowledged writes);
// devstack's launcher fixes that, and the harness also serialises DynamoDB
// requests at the endpoint, which gives the journal its order and keeps
// the checks sound against any moto.
//
// # Running
//
// `make chaos` runs every scenario at full size (internal/testrig/cmd/chaos), including 8
// pollers on 3 hot attackers over more than 5,000 messages, then short fuzz
// runs; `go test ./internal/testrig/chaos` runs the same scenarios, smaller. Fuzz
// longer with, for example,
//
//	go test -run '^$' -fuzz FuzzDecodeMessage -fuzztime 30m ./internal/attribution/
//	go test -run '^$' -fuzz FuzzIncremental -fuzztime 30m ./internal/attribution/
//
// BAD_INPUT.md, generated from the decoder by TestBadInputCatalogue, lists
// each class of malformed message with its exact error and where it ends
// up.
package chaos
