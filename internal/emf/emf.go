// Package emf writes CloudWatch Embedded Metric Format lines: a JSON log
// line that CloudWatch turns into metrics, with no API call on the hot path.
package emf

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// Recorder counts metrics between flushes. Safe for concurrent use.
type Recorder struct {
	Namespace string
	// Dimensions are written with every line (e.g. the function name).
	Dimensions map[string]string
	// Names lists metrics written even when zero, so dashboards see a
	// steady series.
	Names []string
	// Level is written as the line's "level": Lambda's log-level filter
	// gives a JSON line without one (or without an RFC 3339 "timestamp")
	// the level INFO and drops it below WARN, and the metrics with it. Set
	// it to the function's application log level (AWS_LAMBDA_LOG_LEVEL) so
	// the filter always passes it; empty means INFO.
	Level string
	Out   io.Writer
	Now   func() time.Time

	mu     sync.Mutex
	counts map[string]int
}

// Add counts n occurrences of a metric.
func (r *Recorder) Add(name string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counts == nil {
		r.counts = make(map[string]int)
	}
	r.counts[name] += n
}

// Flush writes one EMF line with every counted metric and resets them.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	counts := r.counts
	r.counts = nil
	r.mu.Unlock()
	names := append([]string(nil), r.Names...)
	for name := range counts {
		if !contains(names, name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	dims := make([]string, 0, len(r.Dimensions))
	for k := range r.Dimensions {
		dims = append(dims, k)
	}
	sort.Strings(dims)
	metrics := make([]map[string]string, 0, len(names))
	line := make(map[string]any, len(names)+len(dims)+3)
	for _, name := range names {
		metrics = append(metrics, map[string]string{"Name": name, "Unit": "Count"})
		line[name] = counts[name]
	}
	for _, k := range dims {
		line[k] = r.Dimensions[k]
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	at := now()
	line["level"] = r.Level
	if r.Level == "" {
		line["level"] = "INFO"
	}
	line["timestamp"] = at.UTC().Format(time.RFC3339Nano)
	line["_aws"] = map[string]any{
		"Timestamp": at.UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace":  r.Namespace,
			"Dimensions": [][]string{dims},
			"Metrics":    metrics,
		}},
	}
	b, err := json.Marshal(line)
	if err != nil {
		return fmt.Errorf("encode metrics: %w", err)
	}
	_, err = fmt.Fprintf(r.Out, "%s\n", b)
	return err
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
