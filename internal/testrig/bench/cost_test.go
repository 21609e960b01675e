package bench_test

import (
	"math"
	"testing"

	"decnet-attribution/internal/testrig/bench"
)

func TestCost(t *testing.T) {
	p := bench.ListPrices
	a := bench.DefaultCostAssumptions
	cases := []struct {
		name string
		row  bench.Row
		want bench.CostRow
	}{
		{
			// 4 write units at $0.625 per million; SQS: the send plus a
			// receive and a delete per 10; Lambda: 2 ms of CPU per
			// observation at 256/1769 of a vCPU is 138.2 ms a batch, plus
			// one 10 ms round trip, billed 149 ms at 0.25 GB.
			name: "session batch of 10",
			row:  bench.Row{Design: bench.Incremental, History: 10, Batch: 10, WCUPerObs: 4, CPUMicrosPerObs: 2000, CriticalPathRequests: 1, ObservationsPerSeries: 1},
			want: bench.CostRow{DynamoDB: 2.5, SQS: 0.48, Lambda: 1e5 * (0.25*0.149*0.0000133334 + 0.2e-6), BilledMillisPerBatch: 149},
		},
		{
			// Reads at $0.125 per million; a batch of one pays a receive
			// and a delete per observation; events at $1 per million.
			name: "full recompute, batch of one",
			row:  bench.Row{Design: bench.FullRecompute, History: 1000, Batch: 1, WCUPerObs: 4, RCUPerObs: 104, EventBridgeEntriesPerObs: 0.5, CriticalPathRequests: 2, CriticalPathPutEvents: 1},
			want: bench.CostRow{DynamoDB: 2.5 + 13, SQS: 1.2, EventBridge: 0.5, Lambda: 1e6 * (0.25*0.030*0.0000133334 + 0.2e-6), BilledMillisPerBatch: 30},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := bench.Cost(tc.row, p, a)
			for _, f := range []struct {
				what      string
				got, want float64
			}{
				{"DynamoDB", got.DynamoDB, tc.want.DynamoDB},
				{"SQS", got.SQS, tc.want.SQS},
				{"EventBridge", got.EventBridge, tc.want.EventBridge},
				{"Lambda", got.Lambda, tc.want.Lambda},
				{"billed ms", got.BilledMillisPerBatch, tc.want.BilledMillisPerBatch},
				{"total", got.Total, tc.want.DynamoDB + tc.want.SQS + tc.want.EventBridge + tc.want.Lambda},
			} {
				if math.Abs(f.got-f.want) > 1e-9 {
					t.Errorf("%s: got %.9f, want %.9f", f.what, f.got, f.want)
				}
			}
		})
	}
}
