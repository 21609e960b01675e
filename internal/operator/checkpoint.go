package operator

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
)

// checkpointVersion is the layout of the checkpoint file.
const checkpointVersion = 1

// checkpointFile is the checkpoint as stored: where each scan segment
// stands and which series are done, so that a rerun continues.
type checkpointFile struct {
	Version int    `json:"version"`
	Table   string `json:"table"`
	// Settings fingerprints the thresholds and registry: a rerun with
	// others would mix two rebuilds.
	Settings string         `json:"settings"`
	Segments []segmentState `json:"segments"`
	// Done lists the series rebuilt ("identity|primitive"), sorted.
	Done []string `json:"done"`
	// Failed lists the series that failed; a rerun tries them first.
	Failed []string `json:"failed,omitempty"`
}

type segmentState struct {
	// StartKey is the scan cursor after the last page finished (JSON
	// owned by ddbstore), empty at the start.
	StartKey json.RawMessage `json:"start_key,omitempty"`
	Finished bool            `json:"finished"`
}

// checkpoint is the live state of a rebuild, saved to path (when set).
type checkpoint struct {
	mu      sync.Mutex
	path    string
	file    checkpointFile
	done    map[string]bool // rebuilt, by this run or an earlier one
	claimed map[string]bool // taken up by this run (once per run)
	failed  map[string]bool
	dirty   int // series finished since the last save
}

// settingsFingerprint identifies thresholds and registry.
func settingsFingerprint(t attribution.Thresholds, reg attribution.Registry) string {
	names := make([]string, 0, len(reg))
	for p := range reg {
		names = append(names, p)
	}
	sort.Strings(names)
	pairs := make([][2]string, len(names))
	for i, p := range names {
		pairs[i] = [2]string{p, string(reg[p])}
	}
	b, _ := json.Marshal(struct {
		T attribution.Thresholds
		R [][2]string
	}{t, pairs})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// openCheckpoint loads the checkpoint at path, or starts one. An existing
// checkpoint must match the table, the segment count and the settings.
func openCheckpoint(path, table string, segments int, settings string) (*checkpoint, bool, error) {
	c := &checkpoint{path: path, done: map[string]bool{}, claimed: map[string]bool{}, failed: map[string]bool{}}
	c.file = checkpointFile{Version: checkpointVersion, Table: table, Settings: settings, Segments: make([]segmentState, segments)}
	if path == "" {
		return c, false, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read checkpoint: %w", err)
	}
	var f checkpointFile
	if err := json.Unmarshal(data, &f); err != nil || f.Version != checkpointVersion {
		return nil, false, fmt.Errorf("checkpoint %s is not a rebuild checkpoint of this version (%v); delete it to start over", path, err)
	}
	switch {
	case f.Table != table:
		return nil, false, fmt.Errorf("checkpoint %s is of table %s, not %s; delete it to start over", path, f.Table, table)
	case len(f.Segments) != segments:
		return nil, false, fmt.Errorf("checkpoint %s was made with %d segments; rerun with --segments %d, or delete it to start over", path, len(f.Segments), len(f.Segments))
	case f.Settings != settings:
		return nil, false, fmt.Errorf("checkpoint %s was made with other thresholds or registry; rerun with those, or delete it to start over", path)
	}
	c.file = f
	for _, s := range f.Done {
		c.done[s] = true
	}
	for _, s := range f.Failed {
		c.failed[s] = true
	}
	return c, true, nil
}

// claim marks a series as taken up by this run; false if it is done or
// was taken up already (a series that failed is not tried twice in a run).
func (c *checkpoint) claim(series string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done[series] || c.claimed[series] {
		return false
	}
	c.claimed[series] = true
	return true
}

// seen reports whether a series is done or taken up by this run.
func (c *checkpoint) seen(series string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done[series] || c.claimed[series]
}

// release gives a claimed series back, neither done nor failed.
func (c *checkpoint) release(series string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.claimed, series)
}

// finish records the outcome of a claimed series and saves now and then.
func (c *checkpoint) finish(series string, ok bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		c.done[series] = true
		delete(c.failed, series)
	} else {
		c.failed[series] = true
	}
	c.dirty++
	if c.dirty >= 100 {
		return c.saveLocked()
	}
	return nil
}

// advance records that a segment finished the page after which the scan
// continues at next (empty: the segment is finished) and saves.
func (c *checkpoint) advance(segment int, next ddbstore.ScanCursor) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.file.Segments[segment] = segmentState{StartKey: json.RawMessage(next), Finished: len(next) == 0}
	return c.saveLocked()
}

// segment returns where a segment's scan starts and whether it is finished.
func (c *checkpoint) segment(i int) (ddbstore.ScanCursor, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.file.Segments[i]
	if s.Finished {
		return nil, true
	}
	return ddbstore.ScanCursor(s.StartKey), false
}

// failures returns the series that failed in an earlier run, sorted.
func (c *checkpoint) failures() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.failed))
	for s := range c.failed {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// doneCount counts the series done (by this run or earlier ones).
func (c *checkpoint) doneCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.done)
}

// save writes the checkpoint (when it has a path).
func (c *checkpoint) save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.saveLocked()
}

// remove deletes the checkpoint file: the rebuild is complete.
func (c *checkpoint) remove() error {
	if c.path == "" {
		return nil
	}
	if err := os.Remove(c.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove checkpoint: %w", err)
	}
	return nil
}

func (c *checkpoint) saveLocked() error {
	c.dirty = 0
	if c.path == "" {
		return nil
	}
	c.file.Done = c.file.Done[:0]
	for s := range c.done {
		c.file.Done = append(c.file.Done, s)
	}
	sort.Strings(c.file.Done)
	c.file.Failed = c.file.Failed[:0]
	for s := range c.failed {
		c.file.Failed = append(c.file.Failed, s)
	}
	sort.Strings(c.file.Failed)
	data, err := json.MarshalIndent(c.file, "", " ")
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), filepath.Base(c.path)+".*")
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write checkpoint: %w", err)
	}
	return nil
}
