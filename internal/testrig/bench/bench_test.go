package bench_test

import (
	"context"
	"testing"

	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/bench"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// mustRun measures cfg against this test binary's moto server.
func mustRun(t *testing.T, cfg bench.Config) *bench.Results {
	t.Helper()
	srv := awstest.Moto(t)
	res, err := bench.Run(context.Background(), bench.Target{AWS: srv.Config(), Endpoint: srv.Endpoint, Template: awstest.Template(t)}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

type want struct {
	requests, rcu, wcu, entries float64
	critical                    int
}

func check(t *testing.T, what string, rows []bench.Row, d bench.Design, history, batch int, w want) {
	t.Helper()
	for _, r := range rows {
		if r.Design != d || r.History != history || r.Batch != batch {
			continue
		}
		got := want{r.RequestsPerObs, r.RCUPerObs, r.WCUPerObs, r.EventBridgeEntriesPerObs, r.CriticalPathRequests}
		if got != w {
			t.Errorf("%s %s history %d batch %d: got %+v, want %+v (operations %+v)", what, d, history, batch, got, w, r.Operations)
		}
		return
	}
	t.Errorf("%s %s history %d batch %d: no row", what, d, history, batch)
}

// TestPerObservationCost pins the request and unit counts of one
// observation, which are deterministic: a regression in the store's
// request pattern or item sizes changes them. The series hold no
// departures, so no batch changes a state.
//
// Incremental, warm, at these histories (longer than a record holds
// inline): per observation, a strongly consistent BatchGetItem says its
// item does not exist (1 read unit), the record's conditional UpdateItem
// commits it (1 write unit), and the record's oldest inline observation is
// written as its item (PutItem, 1 write unit): three round trips. With
// five observations of a series in a batch, one record write covers five:
// (1 + 5) ÷ 5. Transactional: one TransactWriteItems per series, each
// observation item and each series record within 1 KB and written
// transactionally (2 × (1 + 1) write units), no reads. Full recompute (on
// the transactional commit): the same writes plus a strongly consistent
// Query of the whole series per observation, which grows with the
// history.
func TestPerObservationCost(t *testing.T) {
	cfg := bench.Config{
		Histories:     []int{10, 50},
		Batches:       []int{1, 10},
		FullRecompute: map[int][]int{10: {1}, 50: {1}},
		Bursts:        []bench.Burst{{Batch: 10, PerSeries: 5, PrimitivesPerAttacker: 2}},
		Cold:          true,
		Noise:         0,
	}
	res := mustRun(t, cfg)
	for _, h := range cfg.Histories {
		check(t, "warm", res.Rows, bench.Incremental, h, 1, want{requests: 3, rcu: 1, wcu: 2, critical: 3})
		check(t, "warm", res.Rows, bench.Incremental, h, 10, want{requests: 2.1, rcu: 1, wcu: 2, critical: 3})
		check(t, "burst", res.BurstRows, bench.Incremental, h, 10, want{requests: 1.3, rcu: 1, wcu: 1.2, critical: 3})
		check(t, "warm", res.Rows, bench.Transactional, h, 1, want{requests: 1, rcu: 0, wcu: 4, critical: 1})
		// One transaction per series, all in flight together.
		check(t, "warm", res.Rows, bench.Transactional, h, 10, want{requests: 1, rcu: 0, wcu: 4, critical: 1})
		// Cold: the attacker's identity (GetItem, 0.5), the records
		// (BatchGetItem for fewer than four primitives, 0.5), the identity
		// record (GetItem, 0.5: read with the lookups, which this design
		// has none of), then the commit.
		check(t, "cold", res.ColdRows, bench.Transactional, h, 1, want{requests: 4, rcu: 1.5, wcu: 4, critical: 4})
		// Ten records of about 380 bytes in one eventually consistent
		// Query within 4 KB: 0.5; the attacker's identity and the
		// identity record: 0.5 each.
		check(t, "cold", res.ColdRows, bench.Transactional, h, 10, want{requests: 1.3, rcu: 0.15, wcu: 4, critical: 4})
	}
	// Ten observations of about 440 bytes read strongly consistently: one
	// 4 KB unit would not hold them, so 2; fifty: 6.
	check(t, "warm", res.Rows, bench.FullRecompute, 10, 1, want{requests: 2, rcu: 2, wcu: 4, critical: 2})
	check(t, "warm", res.Rows, bench.FullRecompute, 50, 1, want{requests: 2, rcu: 6, wcu: 4, critical: 2})

	// No series changes state, so no identity record is written.
	for _, rows := range [][]bench.Row{res.Rows, res.ColdRows, res.BurstRows} {
		for _, r := range rows {
			if r.IdentityRecordWrites != 0 || r.IdentityRecordWCUPerObs != 0 {
				t.Errorf("%s history %d batch %d: %d identity-record writes, %v units per observation, want none", r.Design, r.History, r.Batch, r.IdentityRecordWrites, r.IdentityRecordWCUPerObs)
			}
		}
	}
	for _, s := range res.ItemSizes {
		if s.Item == bench.ItemObservationWithEvents {
			t.Errorf("history %d: %d observation items with events, want none (no state changes)", s.History, s.Count)
		}
		if s.Item == bench.ItemState && s.Max > 1024 {
			t.Errorf("history %d: %s state items up to %d bytes, more than one write unit", s.History, s.Kind, s.Max)
		}
	}
}
