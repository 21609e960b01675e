package chaos

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/testrig/chaos/crash"
	"decnet-attribution/internal/testrig/faultproxy"
	"decnet-attribution/internal/testrig/sqspoller"
)

// Metrics are the function's own counts over a run.
type Metrics struct {
	SDKRetries       int64 // requests the AWS SDK retried
	PublishRetries   int64 // event entries the publisher sent again
	PublishFailures  int64 // events a Publish call could not deliver
	VersionConflicts int64
	Duplicates       int64 // redelivered observations recognised as stored
	Amendments       int64
	Rejected         int64 // invalid messages (each receive)
	Membership       int64 // membership changes that recomputed series
	Rekeyed          int64 // identities retired with a rekeyed event
	Instances        int64 // function instances started (cold starts)
}

// Report is the outcome of one scenario.
type Report struct {
	Scenario   string
	Pollers    int
	Emulator   bool
	Stream     Counts
	Deliveries sqspoller.Stats
	Faults     faultproxy.Stats // what the fault injector counted
	Crashes    int64
	CrashesAt  map[crash.Point]int64 // crash sites that fired, by point
	Outage     time.Duration         // how long the bus refused every event
	Exits      int64                 // function processes the emulator saw exit with the crash status
	Metrics    Metrics
	Events     EventSummary
	Applied    int // observations DynamoDB applied (amendments included)
	// MembershipApplied counts the membership changes DynamoDB applied,
	// by the topic of the identity event that made each.
	MembershipApplied MembershipFigures
	AppliedUnknown    int
	Duration          time.Duration // sending and processing
	Total             time.Duration // including setup and checks
	Verdicts          Verdicts
}

// OK reports whether the run passed every check.
func (r *Report) OK() bool { return r.Verdicts.OK() }

// faultCounts returns the injected faults by "service.kind", and the
// requests each service received.
func (r *Report) faultCounts() (map[string]int64, map[faultproxy.Service]int64, map[faultproxy.Service]int64) {
	faults := map[string]int64{}
	requests := map[faultproxy.Service]int64{}
	faulted := map[faultproxy.Service]int64{}
	for op, c := range r.Faults.ByOp {
		requests[op.Service] += c.Requests
		for f, n := range c.Faults {
			faults[string(op.Service)+"."+f.String()] += n
			if f != faultproxy.FaultFailedEntry && f != faultproxy.FaultDelay {
				faulted[op.Service] += n
			}
		}
	}
	return faults, requests, faulted
}

// Write prints the summary of the run.
func (r *Report) Write(w io.Writer) {
	s, d, v, m := r.Stream, r.Deliveries, r.Verdicts, r.Metrics
	mode := "in process"
	if r.Emulator {
		mode = "bootstrap under the Runtime Interface Emulator"
	}
	verdict := "PASS"
	if !r.OK() {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "== %s: %s (%d poller(s), %s, processed in %s, %s in all)\n", r.Scenario, verdict, r.Pollers, mode,
		r.Duration.Round(time.Millisecond), r.Total.Round(time.Millisecond))
	fmt.Fprintf(w, "   sent: messages=%d distinct_observations=%d duplicates=%d amendments=%d malformed=%d wrapped=%d attackers=%d series=%d\n",
		s.Messages, s.Originals, s.Duplicates, s.Amendments, s.Malformed, s.Wrapped, s.Attackers, s.Series)
	fmt.Fprintf(w, "   deliveries: invocations=%d delivered=%d redeliveries=%d reported_failed=%d failed_invocations=%d moved_by_redrive=%d\n",
		d.Batches, d.Delivered, d.Redelivered, d.Failed, d.BatchErrors, d.DeadLettered)
	faults, requests, faulted := r.faultCounts()
	names := make([]string, 0, len(faults))
	for k := range faults {
		names = append(names, k)
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s=%d", k, faults[k]))
	}
	if len(parts) == 0 {
		parts = []string{"none"}
	}
	if r.Outage > 0 {
		parts = append(parts, fmt.Sprintf("bus_outage=%s", r.Outage.Round(100*time.Millisecond)))
	}
	fmt.Fprintf(w, "   faults: %s\n", strings.Join(parts, " "))
	var rates []string
	for _, svc := range []faultproxy.Service{faultproxy.DynamoDB, faultproxy.EventBridge, faultproxy.SQS} {
		if requests[svc] > 0 {
			rates = append(rates, fmt.Sprintf("%s %.1f%% of %d requests", svc, 100*float64(faulted[svc])/float64(requests[svc]), requests[svc]))
		}
	}
	if fe := faults["eventbridge.failed_entry"]; fe > 0 {
		rates = append(rates, fmt.Sprintf("PutEvents entries %.1f%% failed", 100*float64(fe)/float64(fe+int64(r.Events.Deliveries))))
	}
	if len(rates) > 0 {
		fmt.Fprintf(w, "   fault rates: %s\n", strings.Join(rates, ", "))
	}
	if r.Emulator {
		fmt.Fprintf(w, "   process_exits=%d", r.Exits)
	} else {
		fmt.Fprint(w, "  ")
	}
	var at []string
	for _, p := range crash.Points {
		at = append(at, fmt.Sprintf("%s=%d", p, r.CrashesAt[p]))
	}
	fmt.Fprintf(w, " crashes=%d (%s) instances_started=%d retries: sdk=%d publish=%d version_conflicts=%d redeliveries=%d; duplicates_recognised=%d amendments=%d\n",
		r.Crashes, strings.Join(at, " "), m.Instances, m.SDKRetries, m.PublishRetries, m.VersionConflicts, d.Redelivered, m.Duplicates, m.Amendments)
	e := r.Events
	fmt.Fprintf(w, "   events: state_changed=%d multi_actor_suspected=%d deliveries=%d alerts=%d (deliveries %d) dead_letters=%d",
		e.StateChanged, e.Suspicions, e.Deliveries, e.Alerts, e.AlertDeliveries, e.DeadLetters)
	fmt.Fprintf(w, " observations_applied=%d\n", r.Applied)
	if ie := s.IdentityEvents; len(ie) > 0 {
		ma := r.MembershipApplied
		fmt.Fprintf(w, "   identities: events formed=%d linked=%d merged=%d unmerged=%d repeats=%d; applied changes=%d (formed=%d linked=%d merged=%d unmerged=%d) longest_chain=%d recomputed=%d rekeyed=%d (delivered %d) canonical=%d reports=%d of %d\n",
			ie[attribution.TopicIdentityFormed], ie[attribution.TopicIdentityLinked], ie[attribution.TopicIdentityMerged], ie[attribution.TopicIdentityUnmerged], s.IdentityRepeats,
			ma.Changes, ma.ByTopic[attribution.TopicIdentityFormed], ma.ByTopic[attribution.TopicIdentityLinked], ma.ByTopic[attribution.TopicIdentityMerged], ma.ByTopic[attribution.TopicIdentityUnmerged],
			ma.LongestChain, m.Membership, m.Rekeyed, e.Rekeyed, ma.Canonical, v.IdentityReports, v.ReportsWant)
	}
	fmt.Fprintf(w, "   verdicts: lost=%d double_counted=%d unexpected_events=%d duplicate_events_with_new_id=%d dlq=%d (malformed sent %d)",
		v.Lost, v.DoubleCounted, v.UnexpectedEvents, v.DuplicateEventsWithNewID, v.DLQ, v.DLQWant)
	fmt.Fprintf(w, " conflicting_duplicates=%d state_mismatches=%d alert_mismatches=%d dlq_without_reason=%d",
		v.ConflictingDuplicates, v.StateMismatches, v.AlertMismatches, v.DLQWithoutReason)
	if len(s.IdentityEvents) > 0 {
		fmt.Fprintf(w, " union_mismatches=%d membership_mismatches=%d", v.UnionMismatches, v.MembershipMismatches)
	}
	if v.DLQDuplicates > 0 {
		fmt.Fprintf(w, " dlq_duplicates=%d", v.DLQDuplicates)
	}
	if r.Pollers == 1 {
		fmt.Fprintf(w, " commit_log_mismatches=%d", v.CommitLogMismatches)
	}
	if v.AppliedUnknown > 0 {
		fmt.Fprintf(w, " applied_unknown=%d", v.AppliedUnknown)
	}
	fmt.Fprintln(w)
	for _, p := range v.Problems {
		fmt.Fprintf(w, "   ! %s\n", p)
	}
}

// MembershipFigures describe the membership changes of a run.
type MembershipFigures struct {
	Changes int
	ByTopic map[string]int
	// LongestChain is the most merges DECNET's clusterer ever had between
	// an identity and its canonical one.
	LongestChain int
	// Canonical counts the canonical identities of the final membership.
	Canonical int
}

func membershipFigures(journal []applied, stream *Stream) MembershipFigures {
	f := MembershipFigures{ByTopic: map[string]int{}}
	events, err := stream.identityEvents()
	if err != nil || stream.clusterer == nil {
		return f
	}
	bodies, err := appliedBodies(journal, events)
	if err != nil {
		return f
	}
	for i, a := range journal {
		if a.membership == nil {
			continue
		}
		f.Changes++
		if d, err := attribution.Decode([]byte(bodies[i])); err == nil && d.Identity != nil {
			f.ByTopic[d.Identity.Topic]++
		}
	}
	f.LongestChain = stream.clusterer.longest
	f.Canonical = len(stream.Membership())
	return f
}
