package operator

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
)

func TestRenderBar(t *testing.T) {
	for _, c := range []struct {
		name         string
		done, total  int64
		detail, want string
	}{
		{"start", 0, 200, "", "scan [" + strings.Repeat(".", 30) + "]   0% 0/200"},
		{"half", 100, 200, "3 changed", "scan [" + strings.Repeat("#", 15) + strings.Repeat(".", 15) + "]  50% 100/200  3 changed"},
		{"past an estimated total", 250, 200, "", "scan [" + strings.Repeat("#", 30) + "] 100% 250/200"},
		{"unknown total", 42, 0, "x", "scan 42  x"},
	} {
		if got := renderBar("scan", c.done, c.total, c.detail); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestBarThrottlesRedraws(t *testing.T) {
	var out bytes.Buffer
	b := NewBar(&out, "send", 10)
	now := time.Unix(0, 0)
	b.now = func() time.Time { return now }
	b.Set(1, "")
	b.Set(2, "") // too soon
	now = now.Add(150 * time.Millisecond)
	b.Set(3, "")
	b.Finish(10, "done")
	frames := strings.Split(out.String(), "\r")[1:]
	if len(frames) != 3 || !strings.Contains(frames[0], " 1/10") || !strings.Contains(frames[1], " 3/10") ||
		!strings.HasSuffix(frames[2], "10/10  done\x1b[K\n") {
		t.Fatalf("frames %q", frames)
	}
}

func TestParseSeries(t *testing.T) {
	for in, want := range map[string]attribution.SeriesKey{
		"id-1|motor.input_modality": {IdentityUUID: "id-1", Primitive: "motor.input_modality"},
		"a|b|c.d":                   {IdentityUUID: "a|b", Primitive: "c.d"},
	} {
		if got, ok := parseSeries(in); !ok || got != want {
			t.Errorf("%q: %+v %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "no-bar", "|a.b", "id|"} {
		if _, ok := parseSeries(in); ok {
			t.Errorf("%q parsed", in)
		}
	}
}

func TestCheckpointRejectsOtherRuns(t *testing.T) {
	path := t.TempDir() + "/cp.json"
	settings := settingsFingerprint(attribution.DefaultThresholds(), attribution.BuiltinRegistry())
	c, resumed, err := openCheckpoint(path, "obs", 2, settings)
	if err != nil || resumed {
		t.Fatal(resumed, err)
	}
	if !c.claim("id|a.b") || c.claim("id|a.b") {
		t.Fatal("a series was claimed twice")
	}
	if err := c.finish("id|a.b", true); err != nil {
		t.Fatal(err)
	}
	if err := c.save(); err != nil {
		t.Fatal(err)
	}
	reg, _ := attribution.BuiltinRegistry().WithOverrides([]byte(`{"x.y":"hash"}`))
	for name, open := range map[string]func() error{
		"other table":    func() error { _, _, err := openCheckpoint(path, "obs2", 2, settings); return err },
		"other segments": func() error { _, _, err := openCheckpoint(path, "obs", 4, settings); return err },
		"other registry": func() error {
			_, _, err := openCheckpoint(path, "obs", 2, settingsFingerprint(attribution.DefaultThresholds(), reg))
			return err
		},
	} {
		if err := open(); err == nil || !strings.Contains(err.Error(), "delete it to start over") {
			t.Errorf("%s: %v", name, err)
		}
	}
	c, resumed, err = openCheckpoint(path, "obs", 2, settings)
	if err != nil || !resumed || c.doneCount() != 1 || c.claim("id|a.b") {
		t.Fatalf("reopened: resumed %v, %d done, %v", resumed, c.doneCount(), err)
	}
}

// TestCheckpointKeepsTheScanCursor: a segment resumes from the cursor
// saved with its last page, as written in the file (a JSON value), and a
// finished segment is not scanned again.
func TestCheckpointKeepsTheScanCursor(t *testing.T) {
	path := t.TempDir() + "/cp.json"
	settings := settingsFingerprint(attribution.DefaultThresholds(), attribution.BuiltinRegistry())
	c, _, err := openCheckpoint(path, "obs", 2, settings)
	if err != nil {
		t.Fatal(err)
	}
	cursor := ddbstore.ScanCursor(`{"evidence_ref":"s07","series":"id|a.b"}`)
	if err := c.advance(0, cursor); err != nil {
		t.Fatal(err)
	}
	if err := c.advance(1, nil); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(data), `"series": "id|a.b"`) {
		t.Fatalf("checkpoint %s (%v): the cursor is not kept as JSON", data, err)
	}
	c, resumed, err := openCheckpoint(path, "obs", 2, settings)
	if err != nil || !resumed {
		t.Fatal(resumed, err)
	}
	got, finished := c.segment(0)
	var want, have map[string]string
	if finished || json.Unmarshal(cursor, &want) != nil || json.Unmarshal(got, &have) != nil || !maps.Equal(have, want) {
		t.Fatalf("segment 0 resumes at %s (finished %v), want %s", got, finished, cursor)
	}
	if got, finished := c.segment(1); !finished || len(got) != 0 {
		t.Fatalf("segment 1: cursor %s, finished %v", got, finished)
	}
}
