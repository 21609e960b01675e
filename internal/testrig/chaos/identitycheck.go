package chaos

import (
	"fmt"
	"slices"
	"strings"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/config"
)

// checkMembership checks that every attacker resolves, through its stored
// literal identity and the stored merge graph, to the canonical identity of
// DECNET's final membership, and is a member there.
func checkMembership(v *Verdicts, stream *Stream, obs *observed) {
	for want, attackers := range stream.Membership() {
		for _, a := range attackers {
			id := attribution.StubIdentityID(a)
			if rec := obs.attackers[a]; rec != nil && rec.IdentityUUID != "" {
				id = rec.IdentityUUID
			}
			chain := []string{id}
			for hops := 0; obs.identities[id] != nil && obs.identities[id].Parent != "" && hops <= attribution.MaxMergeChain; hops++ {
				id = obs.identities[id].Parent
				chain = append(chain, id)
			}
			node := obs.identities[id]
			if node == nil {
				node = &attribution.IdentityRecord{} // never written: a stub holds its attacker alone
			}
			switch {
			case id != want:
				v.MembershipMismatches++
				v.problem("attacker %s resolves to %s (%s), DECNET's final membership says %s", a, id, strings.Join(chain, " → "), want)
			case !node.HasMember(id, a):
				v.MembershipMismatches++
				v.problem("attacker %s resolves to %s, whose record does not list it as a member", a, id)
			}
		}
	}
}

// checkUnions recomputes every canonical series from scratch: the reference
// merger over the union of the observations of the identity's attackers in
// DECNET's final membership, in series order, and compares the stored
// state. The content of each observation is the last one DynamoDB applied
// (an amendment's), else the one sent.
func checkUnions(v *Verdicts, stream *Stream, obs *observed, cfg config.Config) {
	type key struct{ attacker, primitive, ref string }
	content := map[key]attribution.Observation{}
	for _, m := range stream.Messages {
		if m.Kind == KindMalformed || m.EventID != "" {
			continue
		}
		if d, err := attribution.Decode([]byte(m.Body)); err == nil && d.Identity == nil {
			o := d.Observation
			if _, seen := content[key{o.AttackerUUID, o.Primitive, o.EvidenceRef}]; !seen || m.Kind == KindAmendment {
				content[key{o.AttackerUUID, o.Primitive, o.EvidenceRef}] = o
			}
		}
	}
	for _, a := range obs.journal {
		if o := a.observation; o != nil {
			content[key{o.AttackerUUID, o.Primitive, o.EvidenceRef}] = *o
		}
	}
	membership := stream.Membership()
	points := map[attribution.SeriesKey][]attribution.Point{}
	for c, attackers := range membership {
		for k, o := range content {
			if _, member := slices.BinarySearch(attackers, k.attacker); member {
				sk := attribution.SeriesKey{IdentityUUID: c, Primitive: k.primitive}
				points[sk] = append(points[sk], o.Point())
			}
		}
	}
	for sk, ps := range points {
		attribution.SortPoints(ps)
		want := attribution.Merge(cfg.Registry.Kind(sk.Primitive), ps, cfg.Thresholds)
		rec := obs.records[sk]
		if rec == nil || rec.Current == nil {
			v.UnionMismatches++
			v.problem("series %s: no stored state, the merger over its attackers' %d observations gives %s", sk, len(ps), want.State)
			continue
		}
		if d := unionDiff(*rec.Current, want); d != "" {
			v.UnionMismatches++
			v.problem("series %s differs from the merger over the union of its attackers (%d observations): %s", sk, len(ps), d)
		}
	}
	for sk, rec := range obs.records {
		if _, canonical := membership[sk.IdentityUUID]; canonical && points[sk] == nil && rec.Current != nil && rec.Current.ObservationCount > 0 {
			v.UnionMismatches++
			v.problem("series %s: stored state %s of %d observations, its attackers sent none", sk, rec.Current.State, rec.Current.ObservationCount)
		}
	}
}

func unionDiff(got, want attribution.State) string {
	var diffs []string
	if got.State != want.State {
		diffs = append(diffs, fmt.Sprintf("state %s, want %s", got.State, want.State))
	}
	if !sameValue(got.CurrentValue, want.CurrentValue) {
		diffs = append(diffs, fmt.Sprintf("current_value %s, want %s", got.CurrentValue, want.CurrentValue))
	}
	if !near(got.Confidence, want.Confidence) {
		diffs = append(diffs, fmt.Sprintf("confidence %v, want %v", got.Confidence, want.Confidence))
	}
	if got.ObservationCount != want.ObservationCount {
		diffs = append(diffs, fmt.Sprintf("observation_count %d, want %d", got.ObservationCount, want.ObservationCount))
	}
	if got.LastObservationTS != want.LastObservationTS {
		diffs = append(diffs, fmt.Sprintf("last_observation_ts %v, want %v", got.LastObservationTS, want.LastObservationTS))
	}
	return strings.Join(diffs, "; ")
}
