package bench_test

import (
	"encoding/json"
	"strings"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/testrig/bench"
)

func TestSessionBatchComposition(t *testing.T) {
	w := bench.NewWorkload("i")
	n := len(bench.Catalogue())
	if n < 38 || n > 42 {
		t.Fatalf("catalogue has %d primitives, want about 40", n)
	}
	for _, tc := range []struct {
		batch     int
		attackers []int // observations per attacker, in batch order
	}{
		{1, []int{1}},
		{10, []int{10}},
		{100, []int{40, 40, 20}},
	} {
		obs := w.SessionBatch(tc.batch, 7)
		if len(obs) != tc.batch {
			t.Fatalf("batch %d: %d observations", tc.batch, len(obs))
		}
		var per []int
		last := ""
		seen := map[attribution.SeriesKey]bool{}
		for _, o := range obs {
			if o.AttackerUUID != last {
				per = append(per, 0)
				last = o.AttackerUUID
			}
			per[len(per)-1]++
			key := attribution.SeriesKey{IdentityUUID: o.AttackerUUID, Primitive: o.Primitive}
			if seen[key] {
				t.Errorf("batch %d: two observations of %v", tc.batch, key)
			}
			seen[key] = true
			if !strings.HasSuffix(o.EvidenceRef, "#s000007") {
				t.Errorf("batch %d: evidence_ref %s is not session 7's", tc.batch, o.EvidenceRef)
			}
		}
		if !equalInts(per, tc.attackers) {
			t.Errorf("batch %d: observations per attacker %v, want %v", tc.batch, per, tc.attackers)
		}
	}
}

func TestBurstBatchComposition(t *testing.T) {
	w := bench.NewWorkload("i")
	obs := w.BurstBatch(100, 4, 10, 20)
	count := map[attribution.SeriesKey]int{}
	attackers := map[string]bool{}
	for _, o := range obs {
		count[attribution.SeriesKey{IdentityUUID: o.AttackerUUID, Primitive: o.Primitive}]++
		attackers[o.AttackerUUID] = true
	}
	if len(obs) != 100 || len(count) != 25 || len(attackers) != 3 {
		t.Fatalf("got %d observations of %d series of %d attackers, want 100 of 25 of 3", len(obs), len(count), len(attackers))
	}
	for k, n := range count {
		if n != 4 {
			t.Errorf("%v has %d observations, want 4", k, n)
		}
	}
}

// TestGroupsSeeTheSameSeries: the designs run on different groups of
// attackers and must process identical values and timestamps.
func TestGroupsSeeTheSameSeries(t *testing.T) {
	a, b := bench.NewWorkload("i"), bench.NewWorkload("f")
	for _, s := range bench.SessionSeries(100) {
		for session := 1; session < 30; session++ {
			x, y := a.Observation(s, session), b.Observation(s, session)
			if x.Value != y.Value || x.TS != y.TS || *x.Confidence != *y.Confidence {
				t.Fatalf("%v session %d differs between groups: %+v / %+v", s, session, x, y)
			}
			if len(x.EvidenceRef) != len(y.EvidenceRef) || len(x.ID) != len(y.ID) {
				t.Fatalf("%v: identifiers differ in length, so items would differ in size", s)
			}
			if x.EvidenceRef == a.Observation(s, session+1).EvidenceRef {
				t.Fatalf("%v: sessions %d and %d are the same observation", s, session, session+1)
			}
		}
	}
}

// TestMessagesAreValid: every generated message decodes and validates as
// the function would, under the registry the template is given.
func TestMessagesAreValid(t *testing.T) {
	reg, err := attribution.BuiltinRegistry().WithOverrides([]byte(bench.RegistryOverrides()))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range bench.Catalogue() {
		if got := reg.Kind(p.Name); got != p.Kind {
			t.Errorf("%s: registry gives %s, want %s", p.Name, got, p.Kind)
		}
	}
	w := bench.NewWorkload("i")
	w.Noise = 0.5 // departures too
	obs := append(w.SessionBatch(100, 3), w.BurstBatch(100, 4, 10, 9)...)
	ev, err := bench.SQSEvent(obs, "arn:aws:sqs:us-east-1:123456789012:q")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for i, r := range ev.Records {
		if ids[r.MessageId] {
			t.Errorf("message ID %s repeated", r.MessageId)
		}
		ids[r.MessageId] = true
		o, err := attribution.DecodeMessage([]byte(r.Body))
		if err == nil {
			err = o.Validate(reg.Kind(o.Primitive))
		}
		if err != nil {
			t.Fatalf("message %d (%s): %v", i, r.Body, err)
		}
		want, _ := json.Marshal(obs[i])
		got, _ := json.Marshal(o)
		if string(got) != string(want) {
			t.Errorf("message %d decodes to %s, want %s", i, got, want)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
