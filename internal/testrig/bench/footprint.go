package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"decnet-attribution/internal/testrig/devstack"
)

// Footprint is the function's size and start-up cost.
type Footprint struct {
	// BootstrapBytes is the size of bootstrap for linux/arm64, built as
	// `sam build` builds it; BootstrapBytesHost the same build for this
	// machine, which the emulator runs.
	BootstrapBytes     int64  `json:"bootstrap_bytes"`
	BootstrapBytesHost int64  `json:"bootstrap_bytes_host"`
	HostPlatform       string `json:"host_platform"`
	// InitMillis is the median of the emulator's own init duration (its
	// "INIT REPORT(durationMs: ...)": from starting the runtime process to
	// the runtime asking for its first event), over fresh processes.
	InitMillis        float64   `json:"init_ms"`
	InitSamplesMillis []float64 `json:"init_ms_samples"`
	// FirstInvokeMillis is the median wall time of a fresh process's first
	// invocation (an empty batch), seen by the caller: process start,
	// init, and the call.
	FirstInvokeMillis float64 `json:"first_invoke_ms"`
	// PeakRSSKiB is the function process's peak resident set (VmHWM) after
	// the warm batches.
	PeakRSSKiB int64 `json:"peak_rss_kib"`
	// WarmBatchMillis is the median wall time of a warm invocation with a
	// batch of WarmBatchSize observations, against the local emulator
	// (whose latency dominates it); WarmBatchReportMillis is the
	// emulator's reported Duration of those invocations.
	WarmBatchMillis       float64 `json:"warm_batch_ms"`
	WarmBatchReportMillis float64 `json:"warm_batch_report_ms"`
	WarmBatchSize         int     `json:"warm_batch_size"`
}

// FootprintOptions say where and how to measure the footprint.
type FootprintOptions struct {
	// Root is the module's root directory.
	Root string
	// RIE is the Runtime Interface Emulator binary.
	RIE string
	// WorkDir receives the built binaries.
	WorkDir string
	// Samples is the number of fresh processes timed (default 5).
	Samples int
	// WarmBatches of WarmBatchSize observations follow the first sample's
	// first invocation (defaults 10 and 10).
	WarmBatches   int
	WarmBatchSize int
	AWS           aws.Config
	Endpoint      string
	Template      *devstack.Template
}

// MeasureFootprint builds the function for linux/arm64 and for this
// machine, then runs the host build under the emulator against a stack
// provisioned from the template.
func MeasureFootprint(ctx context.Context, o FootprintOptions) (*Footprint, error) {
	if o.Samples <= 0 {
		o.Samples = 5
	}
	if o.WarmBatches <= 0 {
		o.WarmBatches = 10
	}
	if o.WarmBatchSize <= 0 {
		o.WarmBatchSize = 10
	}
	fp := &Footprint{HostPlatform: runtime.GOOS + "/" + runtime.GOARCH, WarmBatchSize: o.WarmBatchSize}
	arm, err := build(ctx, o.Root, filepath.Join(o.WorkDir, "linux_arm64", "bootstrap"), "linux", "arm64")
	if err != nil {
		return nil, err
	}
	host, err := build(ctx, o.Root, filepath.Join(o.WorkDir, "host", "bootstrap"), runtime.GOOS, runtime.GOARCH)
	if err != nil {
		return nil, err
	}
	if fp.BootstrapBytes, err = fileSize(arm); err != nil {
		return nil, err
	}
	if fp.BootstrapBytesHost, err = fileSize(host); err != nil {
		return nil, err
	}
	stack, err := devstack.Provision(ctx, devstack.NewClients(o.AWS), o.Template, devstack.Options{
		StackName:  "bench-init",
		Endpoint:   o.Endpoint,
		Parameters: map[string]string{"AttributionRegistry": RegistryOverrides()},
	})
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	w := NewWorkload("e")
	var firsts, warm, reported []float64
	for i := 0; i < o.Samples; i++ {
		em, err := devstack.StartEmulator(devstack.EmulatorOptions{RIE: o.RIE, Bootstrap: host, Env: stack.LambdaEnv()})
		if err != nil {
			return nil, err
		}
		err = func() error {
			t0 := time.Now()
			if err := invokeOK(ctx, em, []byte(`{"Records":[]}`)); err != nil {
				return err
			}
			firsts = append(firsts, ms(time.Since(t0)))
			init, err := initDuration(em)
			if err != nil {
				return err
			}
			fp.InitSamplesMillis = append(fp.InitSamplesMillis, init)
			if i > 0 {
				return nil
			}
			// The first batch creates the attacker's identity; the rest
			// find everything cached.
			for j := 0; j <= o.WarmBatches; j++ {
				ev, err := SQSEvent(w.SessionBatch(o.WarmBatchSize, j+1), stack.ARN(devstack.ObservationQueueID))
				if err != nil {
					return err
				}
				payload, err := json.Marshal(ev)
				if err != nil {
					return err
				}
				t := time.Now()
				if err := invokeOK(ctx, em, payload); err != nil {
					return err
				}
				if j > 0 {
					warm = append(warm, ms(time.Since(t)))
				}
			}
			reported = lastDurations(em, o.WarmBatches+2, o.WarmBatches)
			for _, pid := range em.RuntimePIDs() {
				fp.PeakRSSKiB = max(fp.PeakRSSKiB, vmHWM(pid))
			}
			if fp.PeakRSSKiB == 0 {
				return fmt.Errorf("no function process found to read its peak memory")
			}
			return nil
		}()
		if stopErr := em.Stop(); err == nil && stopErr != nil {
			err = stopErr
		}
		if err != nil {
			return nil, fmt.Errorf("emulator sample %d: %w", i+1, err)
		}
	}
	fp.InitMillis = median(fp.InitSamplesMillis)
	fp.FirstInvokeMillis = median(firsts)
	fp.WarmBatchMillis = median(warm)
	fp.WarmBatchReportMillis = median(reported)
	return fp, nil
}

// build builds the function for goos/goarch as the Makefile does for
// Lambda.
func build(ctx context.Context, root, out, goos, goarch string) (string, error) {
	return out, devstack.BuildBootstrap(ctx, devstack.Build{Root: root, Package: devstack.FunctionPackage, Out: out, GOOS: goos, GOARCH: goarch, Release: true})
}

func invokeOK(ctx context.Context, em *devstack.Emulator, payload []byte) error {
	res, err := em.Invoke(ctx, payload)
	if err != nil {
		return err
	}
	if res.StatusCode != 200 {
		return fmt.Errorf("invocation answered %d: %s", res.StatusCode, res.Body)
	}
	if typ, msg, ok := res.FunctionError(); ok {
		return fmt.Errorf("function error %s: %s", typ, msg)
	}
	var resp struct {
		BatchItemFailures []json.RawMessage `json:"batchItemFailures"`
	}
	if err := json.Unmarshal(res.Body, &resp); err != nil {
		return fmt.Errorf("invocation response %s: %w", res.Body, err)
	}
	if len(resp.BatchItemFailures) > 0 {
		return fmt.Errorf("%d messages failed: %s", len(resp.BatchItemFailures), res.Body)
	}
	return nil
}

var (
	initReport = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)
	report     = regexp.MustCompile(`REPORT RequestId: \S+\s+(?:Init Duration: [0-9.]+ ms\s+)?Duration: ([0-9.]+) ms`)
)

// initDuration reads the emulator's init duration from its log, waiting
// a moment for the line to arrive through the log pipe.
func initDuration(em *devstack.Emulator) (float64, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		log := em.Process.Output()
		if d, ok := parseInitReport(log); ok {
			return d, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the emulator's log has no INIT REPORT line; it ends with:\n%s", tail(log, 2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lastDurations returns the Duration of the last n REPORT lines, once
// the log holds total of them (or after two seconds).
func lastDurations(em *devstack.Emulator, total, n int) []float64 {
	deadline := time.Now().Add(2 * time.Second)
	for {
		out := parseReportDurations(em.Process.Output())
		if len(out) >= total || time.Now().After(deadline) {
			return out[max(0, len(out)-n):]
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// parseInitReport returns the duration of the emulator's first
// "INIT REPORT(durationMs: X)" line.
func parseInitReport(log string) (float64, bool) {
	m := initReport.FindStringSubmatch(log)
	if m == nil {
		return 0, false
	}
	d, err := strconv.ParseFloat(m[1], 64)
	return d, err == nil
}

// parseReportDurations returns the Duration of every REPORT line.
func parseReportDurations(log string) []float64 {
	var out []float64
	for _, m := range report.FindAllStringSubmatch(log, -1) {
		if d, err := strconv.ParseFloat(m[1], 64); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// vmHWM returns a process's peak resident set size in KiB, or 0.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

func fileSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
