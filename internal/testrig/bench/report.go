package bench

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
)

// Report is what `make bench` writes to bench/results.json.
type Report struct {
	GeneratedAt string `json:"generated_at"`
	// Rows are the warm session-pattern rows of both designs.
	Rows []Row `json:"rows"`
	// BootstrapBytes (linux/arm64) and InitMillis (emulator, host build)
	// repeat the footprint's headline figures.
	BootstrapBytes int64       `json:"bootstrap_bytes"`
	InitMillis     float64     `json:"init_ms"`
	ColdRows       []Row       `json:"cold_rows,omitempty"`
	BurstRows      []Row       `json:"burst_rows,omitempty"`
	ShortRows      []Row       `json:"short_rows,omitempty"`
	ItemSizes      []ItemSizes `json:"item_sizes"`
	Footprint      *Footprint  `json:"footprint,omitempty"`
	Targets        []Check     `json:"targets"`
	Cost           []CostRow   `json:"cost"`
	Prices         Prices      `json:"prices"`
	Notes          []string    `json:"notes"`
	Machine        Machine     `json:"machine"`
}

// Machine describes where the figures were taken.
type Machine struct {
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	CPUs      int    `json:"cpus"`
}

// NewReport assembles a report from the measurements.
func NewReport(res *Results, fp *Footprint, generatedAt string) *Report {
	r := &Report{
		GeneratedAt: generatedAt,
		Rows:        res.Rows,
		ColdRows:    res.ColdRows,
		BurstRows:   res.BurstRows,
		ShortRows:   res.ShortRows,
		ItemSizes:   res.ItemSizes,
		Footprint:   fp,
		Notes:       res.Notes,
		Prices:      ListPrices,
		Machine:     Machine{GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH, CPUs: runtime.NumCPU()},
	}
	if fp != nil {
		r.BootstrapBytes, r.InitMillis = fp.BootstrapBytes, fp.InitMillis
	}
	r.Cost = CostModel(r.Rows, append(slices.Clone(r.BurstRows), r.ShortRows...), ListPrices, DefaultCostAssumptions)
	r.Targets = Checks(r)
	return r
}

// find returns the row of a design at (history, batch), or nil.
func find(rows []Row, d Design, h, b int) *Row {
	for i := range rows {
		if rows[i].Design == d && rows[i].History == h && rows[i].Batch == b {
			return &rows[i]
		}
	}
	return nil
}

// cells returns the (history, batch) pairs of rows, sorted.
func cells(rows []Row) [][2]int {
	var out [][2]int
	for _, r := range rows {
		c := [2]int{r.History, r.Batch}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b [2]int) int {
		if a[0] != b[0] {
			return a[0] - b[0]
		}
		return a[1] - b[1]
	})
	return out
}

// ratio formats full/ours.
func ratio(full, ours float64) string {
	switch {
	case ours == 0 && full == 0:
		return "="
	case ours == 0:
		return "∞"
	default:
		return fmt.Sprintf("%.1f×", full/ours)
	}
}

func num(x float64) string {
	switch {
	case x == 0:
		return "0"
	case x >= 100 || (x >= 10 && x == math.Trunc(x)):
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.3g", x)
	}
}

// WriteTable prints the incremental design's rows beside another
// design's, with their ratios (other ÷ incremental).
func WriteTable(w io.Writer, title string, rows []Row, other Design, withCPU bool) {
	fmt.Fprintf(w, "%s\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	o := string(other)
	head := "history\tbatch\t|\treq/obs\t" + o + "\t×\t|\tRCU/obs\t" + o + "\t×\t|\tWCU/obs\t" + o + "\t|\tEB/obs\t" + o + "\t|\tcrit.path\t" + o
	if withCPU {
		head += "\t|\tCPU µs/obs\t" + o + "\t×"
	}
	fmt.Fprintln(tw, head+"\t")
	for _, c := range cells(rows) {
		ours, full := find(rows, Incremental, c[0], c[1]), find(rows, other, c[0], c[1])
		if ours == nil {
			continue
		}
		f := func(get func(*Row) float64) (string, string) {
			if full == nil {
				return "—", ""
			}
			return num(get(full)), ratio(get(full), get(ours))
		}
		reqF, reqX := f(func(r *Row) float64 { return r.RequestsPerObs })
		rcuF, rcuX := f(func(r *Row) float64 { return r.RCUPerObs })
		wcuF, _ := f(func(r *Row) float64 { return r.WCUPerObs })
		ebF, _ := f(func(r *Row) float64 { return r.EventBridgeEntriesPerObs })
		critF := "—"
		if full != nil {
			critF = fmt.Sprint(full.CriticalPathRequests)
		}
		line := fmt.Sprintf("%d\t%d\t|\t%s\t%s\t%s\t|\t%s\t%s\t%s\t|\t%.2f\t%s\t|\t%s\t%s\t|\t%d\t%s",
			c[0], c[1], num(ours.RequestsPerObs), reqF, reqX, num(ours.RCUPerObs), rcuF, rcuX,
			ours.WCUPerObs, wcuF, num(ours.EventBridgeEntriesPerObs), ebF, ours.CriticalPathRequests, critF)
		if withCPU {
			cpuF, cpuX := f(func(r *Row) float64 { return r.CPUMicrosPerObs })
			line += fmt.Sprintf("\t|\t%s\t%s\t%s", num(ours.CPUMicrosPerObs), cpuF, cpuX)
		}
		fmt.Fprintln(tw, line+"\t")
	}
	tw.Flush()
	fmt.Fprintln(w)
}

// WriteReport prints every table of the report.
func WriteReport(w io.Writer, r *Report) {
	for _, other := range []Design{Transactional, FullRecompute} {
		WriteTable(w, fmt.Sprintf("Warm, per observation: session pattern (one observation per series per batch); incremental first, then %s, × = %s ÷ incremental", other, other), r.Rows, other, true)
	}
	if len(r.ColdRows) > 0 {
		WriteTable(w, "Cold (a fresh handler instance's first batch), per observation", r.ColdRows, Transactional, false)
	}
	writeRowList(w, "Warm, several observations of one series per batch (burst):", r.BurstRows)
	writeRowList(w, "Short series (one batch on series of exactly the prior history, a fresh handler):", r.ShortRows)
	fmt.Fprintln(w, "Stored item sizes (bytes, as DynamoDB counts them):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "history\titem\tkind\tcount\tmin\tmean\tmax\t")
	for _, s := range r.ItemSizes {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%d\t\n", s.History, s.Item, s.Kind, s.Count, s.Min, s.Mean, s.Max)
	}
	tw.Flush()
	fmt.Fprintln(w)
	if fp := r.Footprint; fp != nil {
		fmt.Fprintf(w, "Footprint: bootstrap %s bytes (linux/arm64), %s bytes (%s); init %.1f ms (median of %d, emulator's INIT REPORT; samples %v);\n"+
			"  first invocation %.1f ms wall; peak RSS %d KiB; warm batch of %d: %.1f ms wall (emulator Duration %.1f ms), against the local emulator\n\n",
			thousands(fp.BootstrapBytes), thousands(fp.BootstrapBytesHost), fp.HostPlatform, fp.InitMillis, len(fp.InitSamplesMillis), fp.InitSamplesMillis,
			fp.FirstInvokeMillis, fp.PeakRSSKiB, fp.WarmBatchSize, fp.WarmBatchMillis, fp.WarmBatchReportMillis)
	}
	if len(r.Cost) > 0 {
		fmt.Fprintln(w, "Dollars per million observations (on-demand list prices, see bench/COST.md):")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "design\thistory\tbatch\tobs/series\tDynamoDB\tLambda\tSQS\tEventBridge\ttotal\t")
		for _, c := range r.Cost {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", c.Design, c.History, c.Batch, c.PerSeries, c.DynamoDB, c.Lambda, c.SQS, c.EventBridge, c.Total)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "Targets:")
	for _, t := range r.Targets {
		mark := "MET   "
		if !t.Met {
			mark = "MISSED"
		}
		fmt.Fprintf(w, "  %s %s: %s (limit %s). %s\n", mark, t.Name, t.Measured, t.Limit, t.Detail)
	}
}

// writeRowList prints rows one per line, every design.
func writeRowList(w io.Writer, title string, rows []Row) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "design\thistory\tbatch\tobs/series\treq/obs\tRCU/obs\tWCU/obs\tEB/obs\tcrit.path\tCPU µs/obs\t")
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%.2f\t%s\t%d\t%s\t\n", row.Design, row.History, row.Batch, row.ObservationsPerSeries,
			num(row.RequestsPerObs), num(row.RCUPerObs), row.WCUPerObs, num(row.EventBridgeEntriesPerObs), row.CriticalPathRequests, num(row.CPUMicrosPerObs))
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Check is one target of the issue, met or missed.
type Check struct {
	Name     string `json:"name"`
	Limit    string `json:"limit"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
	Detail   string `json:"detail"`
}

// Checks evaluates the targets against the report's figures.
func Checks(r *Report) []Check {
	var out []Check
	ours := func(rows []Row) []Row {
		var o []Row
		for _, row := range rows {
			if row.Design == Incremental {
				o = append(o, row)
			}
		}
		return o
	}
	warm := ours(r.Rows)
	bursts := ours(r.BurstRows)
	short := ours(r.ShortRows)
	worst := func(rows []Row, get func(Row) float64) (float64, Row) {
		best, at := math.Inf(-1), Row{}
		for _, row := range rows {
			if v := get(row); v > best {
				best, at = v, row
			}
		}
		return best, at
	}
	perHistory := func(rows []Row, get func(Row) float64) string {
		var parts []string
		for _, h := range histories(rows) {
			v := math.Inf(-1)
			for _, row := range rows {
				if row.History == h {
					v = max(v, get(row))
				}
			}
			parts = append(parts, fmt.Sprintf("history %d: %s", h, num(v)))
		}
		return strings.Join(parts, ", ")
	}
	if len(warm) > 0 {
		get := func(row Row) float64 { return row.RCUPerObs }
		v, at := worst(warm, get)
		out = append(out, Check{
			Name: "read units per observation, warm, every history", Limit: "≤ 1.0", Measured: num(v), Met: v <= 1.0+eps,
			Detail: fmt.Sprintf("Worst at history %d, batch %d (%s). A series whose record no longer holds it whole reads, strongly consistent, whether a new observation's item exists. Worst per history: %s.", at.History, at.Batch, opsSummary(at), perHistory(warm, get)),
		})
		get = func(row Row) float64 { return row.WCUPerObs }
		out = append(out, writeCheck("write units per observation, warm, every history, one observation per series per batch", 2.0, warm, perHistory(warm, get)))
		var multi []Row
		for _, row := range bursts {
			if row.ObservationsPerSeries >= 4 {
				multi = append(multi, row)
			}
		}
		if len(multi) > 0 {
			out = append(out, writeCheck("write units per observation, 4 or more observations of one series per batch", 1.3, multi, perHistory(multi, get)))
		}
		all := append(slices.Clone(warm), bursts...)
		get = func(row Row) float64 { return float64(row.CriticalPathRequests) }
		v, at = worst(all, get)
		out = append(out, Check{
			Name: "DynamoDB round trips on the critical path, warm", Limit: "≤ 3", Measured: fmt.Sprintf("%.0f", v), Met: v <= 3,
			Detail: fmt.Sprintf("The most round trips one identity's observations waited on in a batch (identities go in parallel; a run of parallel writes of one kind, such as the commits of several series of one identity, is one round trip). Worst at history %d, batch %d (%s). Worst per history: %s.",
				at.History, at.Batch, opsSummary(at), perHistory(all, get)),
		})
	}
	if len(short) > 0 {
		get := func(row Row) float64 { return row.WCUPerObs }
		out = append(out, writeCheck("write units per observation, short series (prior histories of the short rows)", 1.2, short, perHistory(short, get)))
	}
	if c := costRatio(r, 10); c != nil {
		out = append(out, *c)
	}
	var stateMax, identityMax int
	var stateKind string
	for _, s := range r.ItemSizes {
		if s.Item == ItemState && s.Max > stateMax {
			stateMax, stateKind = s.Max, s.Kind
		}
		if s.Item == ItemIdentityRecord {
			identityMax = max(identityMax, s.Max)
		}
	}
	if stateMax > 0 {
		detail := fmt.Sprintf("Largest series record (%s) over every series and history measured.", stateKind)
		if identityMax > 0 {
			detail += fmt.Sprintf(" The identity records (the states table's %s items) measured up to %d bytes.", identityItem, identityMax)
		}
		out = append(out, Check{
			Name: "state item size, common primitives", Limit: "≤ 1024 bytes", Measured: fmt.Sprintf("%d bytes", stateMax), Met: stateMax <= 1024,
			Detail: detail,
		})
	}
	if h := 1000; find(r.Rows, FullRecompute, h, 1) != nil || find(r.Rows, FullRecompute, h, 10) != nil {
		least, desc := math.Inf(1), ""
		var parts []string
		for _, c := range cells(r.Rows) {
			full, o := find(r.Rows, FullRecompute, c[0], c[1]), find(r.Rows, Incremental, c[0], c[1])
			if c[0] != h || full == nil || o == nil {
				continue
			}
			x := math.Inf(1)
			if o.RCUPerObs > 0 {
				x = full.RCUPerObs / o.RCUPerObs
			}
			parts = append(parts, fmt.Sprintf("batch %d: %s vs %s", c[1], num(full.RCUPerObs), num(o.RCUPerObs)))
			if x < least {
				least = x
			}
		}
		desc = strings.Join(parts, "; ")
		measured := "∞ (no reads)"
		if !math.IsInf(least, 1) {
			measured = fmt.Sprintf("%.0f×", least)
		}
		out = append(out, Check{
			Name: "read units vs full recompute at history 1,000", Limit: "≥ 20× fewer", Measured: measured, Met: least >= 20,
			Detail: "Read units per observation, full-recompute vs incremental, same run: " + desc + ".",
		})
	}
	if fp := r.Footprint; fp != nil {
		out = append(out, Check{
			Name: "init under the emulator (host build)", Limit: "≤ 50 ms", Measured: fmt.Sprintf("%.1f ms", fp.InitMillis), Met: fp.InitMillis <= 50,
			Detail: fmt.Sprintf("Median of %d fresh processes; a fresh process's first (empty) invocation takes %.1f ms end to end.", len(fp.InitSamplesMillis), fp.FirstInvokeMillis),
		})
		out = append(out, Check{
			Name: "bootstrap size, linux/arm64", Limit: "≤ 12 MB (12,000,000 bytes)", Measured: thousands(fp.BootstrapBytes) + " bytes", Met: fp.BootstrapBytes <= 12_000_000,
			Detail: fmt.Sprintf("%.2f MiB; the host build is %s bytes.", float64(fp.BootstrapBytes)/(1<<20), thousands(fp.BootstrapBytesHost)),
		})
	}
	return out
}

// writeSplit splits a row's write units per observation into the series
// records and observation items (everything but the identity records) and
// the identity records.
func writeSplit(r Row) (series, identity float64) {
	return r.WCUPerObs - r.IdentityRecordWCUPerObs, r.IdentityRecordWCUPerObs
}

const eps = 1e-9

// whyIdentityRecord says why the identity record is written.
const whyIdentityRecord = "That item is written when a series is created (the fence against a membership change, see Identities in the README) and when a primitive enters or leaves multi_actor (the cross-primitive rule needs one shared item to be exact under concurrent writers), in one transaction with the series record."

// writeCheck evaluates a write-units target over rows and explains the
// worst row.
func writeCheck(name string, limit float64, rows []Row, perHistory string) Check {
	at := rows[0]
	for _, row := range rows[1:] {
		if row.WCUPerObs > at.WCUPerObs {
			at = row
		}
	}
	v := at.WCUPerObs
	c := Check{Name: name, Limit: fmt.Sprintf("≤ %.1f", limit), Measured: fmt.Sprintf("%.3f", v), Met: v <= limit+eps}
	series, ident := writeSplit(at)
	var d []string
	if !c.Met {
		d = append(d, fmt.Sprintf("Missed by %.3f (%.1f%%).", v-limit, 100*(v-limit)/limit))
	}
	d = append(d, fmt.Sprintf("Worst at history %d, batch %d (%d per series; %s): series records and observation items %.3f, identity record %.3f (%d %s of the %s item in a batch of %d observations).",
		at.History, at.Batch, max(1, at.ObservationsPerSeries), opsSummary(at), series, ident, at.IdentityRecordWrites, plural(at.IdentityRecordWrites, "write", "writes"), identityItem, at.Batch))
	if ident > eps {
		d = append(d, whyIdentityRecord)
	}
	d = append(d, fmt.Sprintf("Worst per history: %s.", perHistory))
	c.Detail = strings.Join(d, " ")
	return c
}

// costRatio compares the incremental design's DynamoDB cost per million
// observations with the transactional design's at history h, batch by
// batch, one observation per series.
func costRatio(r *Report, h int) *Check {
	worst, at := math.Inf(-1), 0
	var parts []string
	for _, c := range r.Cost {
		if c.Design != Incremental || c.History != h || c.PerSeries != 1 {
			continue
		}
		for _, t := range r.Cost {
			if t.Design == Transactional && t.History == h && t.Batch == c.Batch && t.PerSeries == 1 && t.DynamoDB > 0 {
				x := c.DynamoDB / t.DynamoDB
				parts = append(parts, fmt.Sprintf("batch %d: %s vs %s (%.0f%%)", c.Batch, dollars(c.DynamoDB), dollars(t.DynamoDB), 100*x))
				if x > worst {
					worst, at = x, c.Batch
				}
			}
		}
	}
	if len(parts) == 0 {
		return nil
	}
	return &Check{
		Name: fmt.Sprintf("DynamoDB cost at history %d, against the transactional design", h), Limit: "≤ 55%", Measured: fmt.Sprintf("%.0f%%", 100*worst), Met: worst <= 0.55+eps,
		Detail: fmt.Sprintf("Per million observations, same run, incremental vs transactional: %s. Worst at batch %d.", strings.Join(parts, "; "), at),
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func histories(rows []Row) []int {
	var hs []int
	for _, r := range rows {
		if !slices.Contains(hs, r.History) {
			hs = append(hs, r.History)
		}
	}
	slices.Sort(hs)
	return hs
}

func opsSummary(r Row) string {
	names := make([]string, 0, len(r.Operations))
	for n := range r.Operations {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s ×%d", n, r.Operations[n].Requests)
	}
	return "batch total: " + strings.Join(parts, ", ")
}
