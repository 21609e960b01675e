package chaos

import (
	"time"

	"decnet-attribution/internal/testrig/chaos/crash"
	"decnet-attribution/internal/testrig/faultproxy"
)

// DynamoDBFaults spreads a whole-request fault rate over DynamoDB's
// failure modes: throttling (both kinds), 500s, connections dropped before
// and after the request reached the table, plus some slow answers.
func DynamoDBFaults(rate float64) faultproxy.Rule {
	return faultproxy.Rule{
		Service:                       faultproxy.DynamoDB,
		Throttle:                      rate * 0.25,
		ProvisionedThroughputExceeded: rate * 0.25,
		InternalError:                 rate * 0.2,
		DropBeforeForward:             rate * 0.1,
		DropAfterForward:              rate * 0.2,
		Delay:                         0.02,
		DelayDuration:                 40 * time.Millisecond,
	}
}

// PutEventsFaults fails whole PutEvents calls with rate (throttled, 500,
// or accepted with the answer lost) and single entries with entryRate.
func PutEventsFaults(rate, entryRate float64) faultproxy.Rule {
	return faultproxy.Rule{
		Service:          faultproxy.EventBridge,
		Operation:        "PutEvents",
		Throttle:         rate * 0.4,
		InternalError:    rate * 0.3,
		DropAfterForward: rate * 0.3,
		FailEntry:        entryRate,
	}
}

// DeadLetterSendFaults fails the function's sends to the dead-letter
// queue with rate, so invalid messages take the redrive path instead.
func DeadLetterSendFaults(rate float64) faultproxy.Rule {
	return faultproxy.Rule{Service: faultproxy.SQS, Operation: "SendMessageBatch", Throttle: rate / 2, InternalError: rate / 2}
}

// Scenarios returns the standard scenarios. Full sizes are for `make
// chaos`; the small ones run in `go test`.
func Scenarios(full bool) []Scenario {
	size := func(small, big int) int {
		if full {
			return big
		}
		return small
	}
	// Small streams need higher crash rates to see each point fire: which
	// sites are reached depends on how batches form, which timing decides.
	rate := func(small, big float64) float64 {
		if full {
			return big
		}
		return small
	}
	return []Scenario{
		{
			// The baseline: in order, no faults. The transitions must be
			// exactly those of the replay of the send order.
			Name: "sequential-clean", Pollers: 1, SendOrder: true,
			Stream: StreamConfig{
				Seed: 11, Observations: size(60, 1500), Attackers: size(10, 40), Hot: 3, HotShare: 0.5,
				Duplicates: 0.1, Amendments: size(6, 40), Malformed: size(6, 29), Wrapped: 0.1, ShuffleWindow: 20, LateShare: 0.02,
			},
		},
		{
			// Faults everywhere, one poller: redeliveries reorder the
			// stream, so the transitions must be those of the replay of the
			// order in which observations were applied. Every dead-letter
			// send fails: invalid messages reach the DLQ by the redrive.
			Name: "sequential-faults", Pollers: 1, VisibilityTimeout: time.Second,
			Faults:    []faultproxy.Rule{DynamoDBFaults(0.08), PutEventsFaults(0.06, 0.15), DeadLetterSendFaults(1)},
			FaultSeed: 2,
			Stream: StreamConfig{
				Seed: 12, Observations: size(60, 1500), Attackers: size(10, 40), Hot: 3, HotShare: 0.5,
				Duplicates: 0.15, Amendments: size(6, 40), Malformed: size(4, 10), Wrapped: 0.1, ShuffleWindow: 20, LateShare: 0.02,
			},
		},
		{
			// The function dies after commits, and after the bus accepted a
			// batch's events but before the batch is reported; the instance
			// is abandoned and a cold one takes the redelivery, which
			// publishes the same events again, with the same IDs.
			Name: "sequential-crashes", Pollers: 1, MaxReceiveCount: 10,
			Crash:     map[crash.Point]float64{crash.AfterCommit: 0.03, crash.AfterPublish: 0.06},
			CrashSeed: 3,
			Faults:    []faultproxy.Rule{DynamoDBFaults(0.02), PutEventsFaults(0.02, 0.05)},
			FaultSeed: 3,
			Stream: StreamConfig{
				Seed: 13, Observations: size(70, 1000), Attackers: size(8, 30), Hot: 3, HotShare: 0.5,
				Duplicates: 0.1, Amendments: size(4, 20), Malformed: size(3, 8), Wrapped: 0.1, ShuffleWindow: 20, LateShare: 0.02,
			},
		},
		{
			// The bus refuses every event for a while: the publisher gives
			// up, the messages whose events the bus did not take fail and
			// come back, and their redeliveries, finding the observations
			// stored, publish the stored events (same IDs) once it is back.
			Name: "bus-outage", Pollers: 1,
			BusOutage: &Outage{AfterShare: 0.3, For: 5 * time.Second},
			Faults:    []faultproxy.Rule{DynamoDBFaults(0.02), PutEventsFaults(0.02, 0.05)},
			FaultSeed: 6,
			Stream: StreamConfig{
				Seed: 16, Observations: size(60, 800), Attackers: size(8, 30), Hot: 3, HotShare: 0.5,
				Duplicates: 0.1, Amendments: size(3, 10), Malformed: size(2, 5), Wrapped: 0.1, ShuffleWindow: 20, LateShare: 0.02,
			},
		},
		{
			// Lambda scaled out on a hot spot: 8 pollers, 3 hot attackers
			// drawing most observations, DynamoDB faults, partial PutEvents
			// failures, crashes. The order of application varies: every
			// series' events must form an unbroken chain.
			Name: "concurrent-hot", Pollers: 8, MaxReceiveCount: 10,
			Faults:    []faultproxy.Rule{DynamoDBFaults(0.06), PutEventsFaults(0.04, 0.12)},
			FaultSeed: 4,
			Crash:     map[crash.Point]float64{crash.AfterCommit: rate(0.04, 0.005), crash.AfterPublish: rate(0.12, 0.02), crash.AfterSpill: rate(0.15, 0.02)},
			CrashSeed: 4,
			Stream: StreamConfig{
				Seed: 14, Observations: size(150, 5000), Attackers: size(15, 60), Hot: 3, HotShare: 0.7,
				Duplicates: 0.1, Malformed: size(6, 29), Wrapped: 0.1, ShuffleWindow: 40, LateShare: 0.02,
			},
			// Longer than an invocation takes with 8 pollers on one moto
			// (as Lambda's is six times the function timeout), so that
			// redeliveries come from failures rather than slowness.
			VisibilityTimeout: 10 * time.Second,
			// At full size the journal serialises about 85,000 requests:
			// some 10 minutes on two cores.
			Timeout: 20 * time.Minute,
		},
		{
			// The real function process exits mid-invocation under the
			// Runtime Interface Emulator, which answers 502 and starts a
			// fresh process for the next batch.
			Name: "emulator-crashes", Pollers: 1, Emulator: true, MaxReceiveCount: 10,
			Crash:     map[crash.Point]float64{crash.AfterCommit: rate(0.08, 0.03), crash.AfterPublish: rate(0.1, 0.06), crash.AfterSpill: rate(0.5, 0.06)},
			CrashSeed: 5,
			Faults:    []faultproxy.Rule{DynamoDBFaults(0.02), PutEventsFaults(0.02, 0.05)},
			FaultSeed: 5,
			Stream: StreamConfig{
				Seed: 15, Observations: size(60, 600), Attackers: size(6, 20), Hot: 2, HotShare: 0.5,
				Duplicates: 0.1, Amendments: size(3, 10), Malformed: size(3, 6), Wrapped: 0.1, ShuffleWindow: 20, LateShare: 0.02,
			},
		},
		{
			// DECNET's clusterer forms, links, merges (chains too), unmerges
			// and repeats identities while 8 pollers work on hot attackers
			// that the identities group, with DynamoDB and EventBridge
			// faults and crashes, also right after a membership change is
			// stored. No observation may be lost or counted twice across a
			// merge or an unmerge, and every canonical series must end as
			// the merger over the union of its attackers.
			Name: "identities-concurrent", Pollers: size(4, 8), MaxReceiveCount: 10,
			Faults:    []faultproxy.Rule{DynamoDBFaults(0.05), PutEventsFaults(0.04, 0.1)},
			FaultSeed: 7,
			Crash: map[crash.Point]float64{
				crash.AfterCommit: rate(0.05, 0.005), crash.AfterPublish: rate(0.08, 0.02), crash.AfterMembership: rate(0.25, 0.05), crash.AfterSpill: rate(0.15, 0.02),
			},
			CrashSeed: 7,
			Stream: StreamConfig{
				Seed: 17, Observations: size(120, 3000), Attackers: size(12, 50), Hot: 3, HotShare: 0.6,
				Duplicates: 0.1, Malformed: size(2, 10), Wrapped: 0.1, ShuffleWindow: 30, LateShare: 0.02,
				Identities: IdentityConfig{Events: size(30, 300)},
			},
			VisibilityTimeout: 10 * time.Second,
		},
		{
			// The same under the Runtime Interface Emulator: the function
			// process exits after commits, publishes and membership
			// changes; amendments as well, with one poller.
			Name: "identities-emulator", Pollers: 1, Emulator: true, MaxReceiveCount: 10,
			Crash:     map[crash.Point]float64{crash.AfterCommit: rate(0.08, 0.03), crash.AfterPublish: rate(0.12, 0.05), crash.AfterMembership: rate(0.25, 0.08), crash.AfterSpill: rate(0.3, 0.06)},
			CrashSeed: 8,
			Faults:    []faultproxy.Rule{DynamoDBFaults(0.02), PutEventsFaults(0.02, 0.05)},
			FaultSeed: 8,
			Stream: StreamConfig{
				Seed: 22, Observations: size(60, 600), Attackers: size(8, 20), Hot: 2, HotShare: 0.5,
				Duplicates: 0.1, Amendments: size(2, 10), Malformed: size(2, 5), Wrapped: 0.1, ShuffleWindow: 20, LateShare: 0.02,
				Identities: IdentityConfig{Events: size(20, 120)},
			},
		},
	}
}
