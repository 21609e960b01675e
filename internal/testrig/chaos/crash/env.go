package crash

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"

	"decnet-attribution/internal/attribution"
)

// Environment variables of the crash binary.
const (
	EnvSeed            = "CHAOS_CRASH_SEED"
	EnvAfterCommit     = "CHAOS_CRASH_AFTER_COMMIT"
	EnvAfterPublish    = "CHAOS_CRASH_AFTER_PUBLISH"
	EnvAfterMembership = "CHAOS_CRASH_AFTER_MEMBERSHIP"
	EnvAfterSpill      = "CHAOS_CRASH_AFTER_SPILL"
	EnvMarkerDir       = "CHAOS_CRASH_DIR"
	EnvAppliedLog      = "CHAOS_APPLIED_LOG"
	EnvProbeEndpoint   = "CHAOS_PROBE_ENDPOINT"
)

// Config is the crash binary's configuration.
type Config struct {
	Seed uint64
	// AfterCommit, AfterPublish, AfterMembership and AfterSpill are the
	// rates of the crash points.
	AfterCommit, AfterPublish, AfterMembership, AfterSpill float64
	// MarkerDir holds one file per site that crashed (see DirOnce).
	MarkerDir string
	// AppliedLog, when set, receives the commits applied (see FileRecorder).
	AppliedLog string
	// ProbeEndpoint is the AWS endpoint the recorder reads the truth from.
	ProbeEndpoint string
}

// ConfigFromEnv reads the configuration.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return v
	}
	var c Config
	var errs []error
	if raw := get(EnvSeed); raw != "" {
		seed, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: want an unsigned integer, got %q", EnvSeed, raw))
		}
		c.Seed = seed
	}
	rate := func(name string) float64 {
		raw := get(name)
		if raw == "" {
			return 0
		}
		r, err := strconv.ParseFloat(raw, 64)
		if err != nil || r < 0 || r > 1 {
			errs = append(errs, fmt.Errorf("%s: want a rate between 0 and 1, got %q", name, raw))
			return 0
		}
		return r
	}
	c.AfterCommit = rate(EnvAfterCommit)
	c.AfterPublish = rate(EnvAfterPublish)
	c.AfterMembership = rate(EnvAfterMembership)
	c.AfterSpill = rate(EnvAfterSpill)
	c.MarkerDir = get(EnvMarkerDir)
	c.AppliedLog = get(EnvAppliedLog)
	c.ProbeEndpoint = get(EnvProbeEndpoint)
	if (c.AfterCommit > 0 || c.AfterPublish > 0 || c.AfterMembership > 0 || c.AfterSpill > 0) && c.MarkerDir == "" {
		errs = append(errs, fmt.Errorf("%s: is required when a crash rate is set", EnvMarkerDir))
	}
	if c.AppliedLog != "" && c.ProbeEndpoint == "" {
		errs = append(errs, fmt.Errorf("%s: is required with %s", EnvProbeEndpoint, EnvAppliedLog))
	}
	return c, errors.Join(errs...)
}

// Env returns the variables that ConfigFromEnv reads back as c.
func (c Config) Env() []string {
	env := []string{
		EnvSeed + "=" + strconv.FormatUint(c.Seed, 10),
		EnvAfterCommit + "=" + strconv.FormatFloat(c.AfterCommit, 'g', -1, 64),
		EnvAfterPublish + "=" + strconv.FormatFloat(c.AfterPublish, 'g', -1, 64),
		EnvAfterMembership + "=" + strconv.FormatFloat(c.AfterMembership, 'g', -1, 64),
		EnvAfterSpill + "=" + strconv.FormatFloat(c.AfterSpill, 'g', -1, 64),
	}
	for _, kv := range [][2]string{{EnvMarkerDir, c.MarkerDir}, {EnvAppliedLog, c.AppliedLog}, {EnvProbeEndpoint, c.ProbeEndpoint}} {
		if kv[1] != "" {
			env = append(env, kv[0]+"="+kv[1])
		}
	}
	return env
}

// Rates returns the rate of each crash point.
func (c Config) Rates() map[Point]float64 {
	return map[Point]float64{AfterCommit: c.AfterCommit, AfterPublish: c.AfterPublish, AfterMembership: c.AfterMembership, AfterSpill: c.AfterSpill}
}

// Plan returns the crash plan, remembering crashed sites in MarkerDir.
func (c Config) Plan() *Plan {
	return &Plan{Seed: c.Seed, Rates: c.Rates(), Once: DirOnce(c.MarkerDir)}
}

// Outcome of a recorded commit.
const (
	OutcomeApplied = "applied"
	OutcomeUnknown = "unknown"
)

// Entry is one line of an applied log.
type Entry struct {
	Outcome      string                    `json:"outcome"`
	Observations []attribution.Observation `json:"observations"`
}

// FileRecorder is a Recorder appending one JSON line per commit to a file.
// Each line is written with one write call, so it survives the process
// exiting right after.
type FileRecorder struct {
	mu   sync.Mutex
	file *os.File
	err  error
}

var _ Recorder = (*FileRecorder)(nil)

// OpenFileRecorder opens path for appending.
func OpenFileRecorder(path string) (*FileRecorder, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open applied log: %w", err)
	}
	return &FileRecorder{file: f}, nil
}

// Applied implements Recorder.
func (r *FileRecorder) Applied(obs []attribution.Observation) { r.write(OutcomeApplied, obs) }

// Unknown implements Recorder.
func (r *FileRecorder) Unknown(obs []attribution.Observation) { r.write(OutcomeUnknown, obs) }

func (r *FileRecorder) write(outcome string, obs []attribution.Observation) {
	b, err := json.Marshal(Entry{Outcome: outcome, Observations: obs})
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		_, err = r.file.Write(append(b, '\n'))
	}
	if err != nil && r.err == nil {
		r.err = err
	}
}

// Err returns the first write error.
func (r *FileRecorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// ReadLog reads an applied log. A missing file is an empty log.
func ReadLog(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read applied log: %w", err)
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("applied log line %d: %w", line, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read applied log: %w", err)
	}
	return out, nil
}
