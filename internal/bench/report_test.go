package bench_test

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"

	"decnet-attribution/internal/bench"
)

func row(d bench.Design, h, b int, rcu, wcu float64, critical int) bench.Row {
	return bench.Row{
		Design: d, History: h, Batch: b, RCUPerObs: rcu, WCUPerObs: wcu, RequestsPerObs: 1 / float64(b),
		CriticalPathRequests: critical, ObservationsPerSeries: 1, CPUMicrosPerObs: 1500,
		Operations: map[string]bench.Usage{"TransactWriteItems": {Requests: 1, WCU: 4 * float64(b)}},
	}
}

func sampleReport() *bench.Report {
	res := &bench.Results{
		Rows: []bench.Row{
			row(bench.Incremental, 10, 10, 0, 4, 1),
			row(bench.FullRecompute, 10, 10, 2, 4, 11),
			row(bench.Incremental, 1000, 10, 0.05, 4.05, 2),
			row(bench.FullRecompute, 1000, 10, 107, 4, 11),
			row(bench.Incremental, 10000, 100, 0, 4, 1),
		},
		BurstRows: []bench.Row{func() bench.Row {
			r := row(bench.Incremental, 10, 100, 0, 2.5, 1)
			r.ObservationsPerSeries = 4
			return r
		}()},
		ItemSizes: []bench.ItemSizes{{History: 10, Item: "state", Kind: "numeric", Count: 3, Min: 500, Mean: 600, Max: 700}},
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
		{"read units per observation", true, "0.05"},
		{"write units per observation, one", false, "4.050"},
		{"write units per observation, ≥ 4", true, "2.500"},
		{"DynamoDB requests on the critical path", true, "2"},
		{"state item size", true, "700 bytes"},
		{"read units vs full recompute", true, "2140×"},
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

func TestWriteReportShowsBothDesignsAndRatios(t *testing.T) {
	var buf bytes.Buffer
	bench.WriteReport(&buf, sampleReport())
	out := buf.String()
	for _, want := range []string{"history", "full", "×", "∞", "2140.0×", "MISSED", "MET", "Dollars per million"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	var md bytes.Buffer
	bench.WriteCostMarkdown(&md, sampleReport())
	for _, want := range []string{"$0.625 per million", "2 × (1 + 1) = 4 write units", "full-recompute"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("COST.md lacks %q:\n%s", want, md.String())
		}
	}
}

func TestWriteChart(t *testing.T) {
	var buf bytes.Buffer
	if err := bench.WriteChart(&buf, sampleReport().Rows); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 500 {
		t.Fatalf("chart is %v, too small to read", b)
	}
	// Both designs' bars are drawn.
	for _, want := range []color.RGBA{{31, 119, 180, 255}, {255, 127, 14, 255}} {
		if count(img, want) < 500 {
			t.Errorf("fewer than 500 pixels of %v", want)
		}
	}
}

func count(img image.Image, c color.RGBA) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if color.RGBAModel.Convert(img.At(x, y)) == c {
				n++
			}
		}
	}
	return n
}
