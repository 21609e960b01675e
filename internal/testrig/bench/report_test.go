package bench_test

import (
	"bytes"
	"strings"
	"testing"

	"decnet-attribution/internal/testrig/bench"
)

func row(d bench.Design, h, b int, rcu, wcu float64, critical int) bench.Row {
	return bench.Row{
		Design: d, History: h, Batch: b, RCUPerObs: rcu, WCUPerObs: wcu, RequestsPerObs: 1 / float64(b),
		CriticalPathRequests: critical, ObservationsPerSeries: 1, CPUMicrosPerObs: 1500,
		Operations: map[string]bench.Usage{"TransactWriteItems": {Requests: 1, WCU: wcu * float64(b)}},
	}
}

// withIdentity makes n of a row's transactional writes identity records
// (2 units each).
func withIdentity(r bench.Row, n int) bench.Row {
	r.IdentityRecordWrites = n
	r.IdentityRecordWCUPerObs = 2 * float64(n) / float64(r.Batch)
	return r
}

func sampleReport() *bench.Report {
	res := &bench.Results{
		Rows: []bench.Row{
			row(bench.Incremental, 10, 10, 1, 2, 3),
			row(bench.Transactional, 10, 10, 0, 4, 1),
			row(bench.FullRecompute, 10, 10, 2, 4, 11),
			withIdentity(row(bench.Incremental, 1000, 10, 1, 2.2, 3), 1),
			row(bench.Transactional, 1000, 10, 0, 4, 1),
			row(bench.FullRecompute, 1000, 10, 107, 4, 11),
			row(bench.Incremental, 10000, 100, 0.98, 2, 3),
		},
		BurstRows: []bench.Row{func() bench.Row {
			r := row(bench.Incremental, 10, 100, 1, 1.25, 3)
			r.ObservationsPerSeries = 4
			return r
		}()},
		ShortRows: []bench.Row{
			withIdentity(row(bench.Incremental, 0, 10, 0.6, 2.2, 3), 1),
			withIdentity(row(bench.Transactional, 0, 10, 0.6, 4.2, 3), 1),
			row(bench.Incremental, 5, 10, 0.6, 1, 2),
			row(bench.Transactional, 5, 10, 0.6, 4, 2),
		},
		ItemSizes: []bench.ItemSizes{
			{History: 10, Item: bench.ItemState, Kind: "numeric", Count: 3, Min: 500, Mean: 600, Max: 700},
			{History: 10, Item: bench.ItemIdentityRecord, Kind: "identity", Count: 1, Min: 150, Mean: 150, Max: 150},
			{History: 10, Item: bench.ItemObservation, Kind: "numeric", Count: 3, Min: 430, Mean: 433, Max: 436},
			{History: 10, Item: bench.ItemObservationWritten, Kind: "numeric", Count: 20, Min: 430, Mean: 440, Max: 610},
			{History: 10, Item: bench.ItemObservationWithEvents, Kind: "numeric", Count: 1, Min: 610, Mean: 610, Max: 610},
		},
	}
	fp := &bench.Footprint{BootstrapBytes: 10_700_000, BootstrapBytesHost: 11_500_000, InitMillis: 12, InitSamplesMillis: []float64{12}}
	return bench.NewReport(res, fp, "2026-01-01T00:00:00Z")
}

func TestChecks(t *testing.T) {
	rep := sampleReport()
	got := map[string]bench.Check{}
	for _, c := range rep.Targets {
		got[c.Name] = c
	}
	for _, tc := range []struct {
		prefix   string
		met      bool
		measured string
	}{
		{"read units per observation", true, "1"},
		{"write units per observation, warm, every history", false, "2.200"},
		{"write units per observation, 4 or more", true, "1.250"},
		{"write units per observation, short series", false, "2.200"},
		{"DynamoDB round trips on the critical path", true, "3"},
		{"DynamoDB cost at history 10", true, "55%"},
		{"state item size", true, "700 bytes"},
		{"read units vs full recompute", true, "107×"},
		{"init under the emulator", true, "12.0 ms"},
		{"bootstrap size", true, "10,700,000 bytes"},
	} {
		var c *bench.Check
		for name, v := range got {
			if strings.HasPrefix(name, tc.prefix) {
				v := v
				c = &v
			}
		}
		if c == nil {
			t.Errorf("no target %q among %v", tc.prefix, rep.Targets)
			continue
		}
		if c.Met != tc.met || c.Measured != tc.measured {
			t.Errorf("%s: met %v measured %q, want %v %q (%s)", c.Name, c.Met, c.Measured, tc.met, tc.measured, c.Detail)
		}
	}
}

// TestWriteTargetsExplainTheExcess: a missed write target says by how
// much, where the worst row spent its units and why the identity record is
// written; COST.md shows the incremental rows split the same way.
func TestWriteTargetsExplainTheExcess(t *testing.T) {
	rep := sampleReport()
	var detail string
	for _, c := range rep.Targets {
		if strings.HasPrefix(c.Name, "write units per observation, warm, every history") {
			detail = c.Detail
		}
	}
	for _, want := range []string{
		"Missed by 0.200 (10.0%)",
		"history 1000, batch 10 (1 per series;",
		"series records and observation items 2.000, identity record 0.200 (1 write of the #identity item in a batch of 10 observations)",
		"when a series is created",
		"enters or leaves multi_actor",
	} {
		if !strings.Contains(detail, want) {
			t.Errorf("write target lacks %q:\n%s", want, detail)
		}
	}
	var md bytes.Buffer
	bench.WriteCostMarkdown(&md, rep)
	for _, want := range []string{
		"| rows | history | batch | obs/series | write units | records and items | identity record | identity-record writes | read units |",
		"| warm | 1000 | 10 | 1 | 2.200 | 2.000 | 0.200 | 1 | 1.000 |",
		"| short series | 0 | 10 | 1 | 2.200 | 2.000 | 0.200 | 1 | 0.600 |",
		"| 0 | 10 | 0.6 / 0.6 | 2.2 / 4.2 (",
		"2 / 4 / 4 (2.0×)",
		"measured up to 150 bytes",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("COST.md lacks %q:\n%s", want, md.String())
		}
	}
}

func TestWriteReportShowsBothDesignsAndRatios(t *testing.T) {
	var buf bytes.Buffer
	bench.WriteReport(&buf, sampleReport())
	out := buf.String()
	for _, want := range []string{"history", "transactional", "full-recompute", "×", "2.0×", "107.0×", "Short series", "MISSED", "MET", "Dollars per million"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	var md bytes.Buffer
	bench.WriteCostMarkdown(&md, sampleReport())
	for _, want := range []string{"$0.625 per million", "2 × (1 + 1) = 4 write units", "full-recompute", "transactional"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("COST.md lacks %q:\n%s", want, md.String())
		}
	}
}
