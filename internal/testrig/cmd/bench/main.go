// Command bench measures what one observation costs the attribution
// function, for the incremental design and the full-recompute design side
// by side, against moto and the Lambda Runtime Interface Emulator:
//
//	go run ./internal/testrig/cmd/bench -out bench
//
// It prints the tables and the targets' status, and writes
// <out>/results.json and <out>/COST.md.
// With -from results.json it renders those again from saved figures
// without measuring (after a change to the cost model, say).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"decnet-attribution/internal/testrig/bench"
	"decnet-attribution/internal/testrig/devstack"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	def := bench.DefaultConfig()
	out := flag.String("out", "bench", "directory for results.json and COST.md")
	histories := flag.String("histories", ints(def.Histories), "prior history lengths per series")
	batches := flag.String("batches", ints(def.Batches), "batch sizes (session pattern)")
	full := flag.String("full", "10000:1", "history:batch,batch;... limits on the full-recompute design's cells (other histories run every batch size)")
	samples := flag.Int("init-samples", 5, "fresh function processes timed under the emulator")
	noFootprint := flag.Bool("no-footprint", false, "skip the builds and the emulator")
	rie := flag.String("rie", "", "Runtime Interface Emulator (default: $AWS_LAMBDA_RIE or .local/bin/aws-lambda-rie)")
	quiet := flag.Bool("q", false, "no progress lines")
	from := flag.String("from", "", "re-render the tables and COST.md from a results.json instead of measuring")
	flag.Parse()

	root, err := devstack.RepoRoot()
	if err != nil {
		return err
	}
	cfg := def
	if cfg.Histories, err = parseInts(*histories); err != nil {
		return fmt.Errorf("-histories: %w", err)
	}
	if cfg.Batches, err = parseInts(*batches); err != nil {
		return fmt.Errorf("-batches: %w", err)
	}
	if cfg.FullRecompute, err = parseFull(*full); err != nil {
		return fmt.Errorf("-full: %w", err)
	}
	logf := func(format string, args ...any) {
		if !*quiet {
			fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
		}
	}
	cfg.Logf = logf
	if *rie == "" {
		*rie, _ = devstack.FindRIE(root) // missing: the emulator says so when it starts, if it is needed
	}

	dir := *out
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	if *from != "" {
		b, err := os.ReadFile(*from)
		if err != nil {
			return err
		}
		var saved bench.Report
		if err := json.Unmarshal(b, &saved); err != nil {
			return fmt.Errorf("%s: %w", *from, err)
		}
		res := &bench.Results{Rows: saved.Rows, ColdRows: saved.ColdRows, BurstRows: saved.BurstRows, ItemSizes: saved.ItemSizes, Notes: saved.Notes}
		return write(dir, *out, bench.NewReport(res, saved.Footprint, saved.GeneratedAt), time.Now())
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	tmpl, err := devstack.LoadTemplate(filepath.Join(root, "template.yaml"))
	if err != nil {
		return err
	}
	moto, err := bench.StartFastMoto(bench.FastMotoOptions{})
	if err != nil {
		return err
	}
	defer moto.Stop()
	awsCfg := devstack.AWSConfig(moto.Endpoint, devstack.DefaultRegion)
	reset := func(ctx context.Context) error { return devstack.ResetMoto(ctx, moto.Endpoint) }
	started := time.Now()

	var fp *bench.Footprint
	if !*noFootprint {
		if _, err := os.Stat(*rie); err != nil {
			return fmt.Errorf("the Runtime Interface Emulator is needed at %s (`make tools`): %w", *rie, err)
		}
		work, err := os.MkdirTemp("", "bench-build-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(work)
		logf("building bootstrap for linux/arm64 and this machine, timing init under the emulator")
		fp, err = bench.MeasureFootprint(ctx, bench.FootprintOptions{
			Root: root, RIE: *rie, WorkDir: work, Samples: *samples,
			AWS: awsCfg, Endpoint: moto.Endpoint, Template: tmpl,
		})
		if err != nil {
			return fmt.Errorf("footprint: %w", err)
		}
		if err := reset(ctx); err != nil {
			return err
		}
	}
	res, err := bench.Run(ctx, bench.Target{AWS: awsCfg, Endpoint: moto.Endpoint, Template: tmpl, Reset: reset}, cfg)
	if err != nil {
		return err
	}
	return write(dir, *out, bench.NewReport(res, fp, time.Now().UTC().Format(time.RFC3339)), started)
}

// write prints the report and writes results.json and COST.md
// into dir (shown as out).
func write(dir, out string, rep *bench.Report, started time.Time) error {
	fmt.Println()
	bench.WriteReport(os.Stdout, rep)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "COST.md"), func(f *os.File) error { bench.WriteCostMarkdown(f, rep); return nil }); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s and %s in %s\n", filepath.Join(out, "results.json"),
		filepath.Join(out, "COST.md"), time.Since(started).Round(time.Second))
	return nil
}

func writeFile(path string, write func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

func ints(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("want positive whole numbers, got %q", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

// parseFull reads "10000:1;1000:1,10".
func parseFull(s string) (map[int][]int, error) {
	out := map[int][]int{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		h, bs, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("want history:batch,batch, got %q", part)
		}
		n, err := strconv.Atoi(strings.TrimSpace(h))
		if err != nil {
			return nil, fmt.Errorf("history %q: %w", h, err)
		}
		if strings.TrimSpace(bs) == "" {
			out[n] = nil
			continue
		}
		if out[n], err = parseInts(bs); err != nil {
			return nil, err
		}
	}
	return out, nil
}
