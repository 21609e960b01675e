package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"decnet-attribution/internal/bridge"
)

func openSpool(t *testing.T, dir string, opts bridge.SpoolOptions) *bridge.Spool {
	t.Helper()
	s, err := bridge.OpenSpool(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func appendN(t *testing.T, s *bridge.Spool, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := s.Append([]byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
}

// drainAll reads every synced entry, acknowledging them, and returns their
// bodies.
func drainAll(t *testing.T, s *bridge.Spool, ack bool) []string {
	t.Helper()
	var out []string
	for {
		es, err := s.Poll(7, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			return out
		}
		for _, e := range es {
			out = append(out, string(e.Data))
		}
		if ack {
			if err := s.Ack(es); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func bodies(from, n int) []string {
	var out []string
	for i := from; i < from+n; i++ {
		out = append(out, fmt.Sprintf(`{"n":%d}`, i))
	}
	return out
}

func equal(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestSpoolOnlySyncedEventsAreRead(t *testing.T) {
	s := openSpool(t, t.TempDir(), bridge.SpoolOptions{})
	defer s.Close()
	appendN(t, s, 0, 3)
	if got := drainAll(t, s, false); len(got) != 0 {
		t.Fatalf("read %v before the sync", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Next(ctx, 10, 1<<20); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next before the sync: %v", err)
	}
	go func() { time.Sleep(20 * time.Millisecond); _ = s.Sync() }()
	es, err := s.Next(context.Background(), 10, 1<<20)
	if err != nil || len(es) != 3 {
		t.Fatalf("Next after the sync: %d entries, %v", len(es), err)
	}
	if st := s.Stats(); st.Synced != 3 || st.Depth != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestSpoolBatchBytes(t *testing.T) {
	s := openSpool(t, t.TempDir(), bridge.SpoolOptions{})
	defer s.Close()
	appendN(t, s, 0, 5) // 8 bytes each
	_ = s.Sync()
	es, _ := s.Poll(10, 20)
	if len(es) != 2 {
		t.Errorf("20 bytes hold %d entries of 8, want 2", len(es))
	}
	es, _ = s.Poll(10, 1)
	if len(es) != 1 {
		t.Errorf("a batch holds at least one entry, got %d", len(es))
	}
}

// Acknowledged events never come back; unacknowledged ones come back
// after a restart, in order, across segments.
func TestSpoolReopenResumesAtCursor(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, bridge.SpoolOptions{SegmentBytes: 100})
	appendN(t, s, 0, 50)
	_ = s.Sync()
	es, _ := s.Poll(20, 1<<20)
	if err := s.Ack(es); err != nil {
		t.Fatal(err)
	}
	_, _ = s.Poll(5, 1<<20) // read but not acknowledged
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSpool(t, dir, bridge.SpoolOptions{SegmentBytes: 100})
	defer s.Close()
	if d := s.Stats().Depth; d != 30 {
		t.Errorf("depth after reopen = %d, want 30", d)
	}
	appendN(t, s, 50, 3)
	_ = s.Sync()
	if got, want := drainAll(t, s, true), bodies(20, 33); !equal(got, want) {
		t.Errorf("after reopen got %v, want %v", got, want)
	}
	if st := s.Stats(); st.Depth != 0 || st.Bytes != 0 {
		t.Errorf("emptied spool: %+v", st)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	if len(segs) != 1 {
		t.Errorf("segments left: %v, want only the one being written", segs)
	}
}

// A crash in the middle of writing a record leaves a torn tail: it is cut
// off, and every whole record before it survives.
func TestSpoolCutsTornTail(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, bridge.SpoolOptions{})
	appendN(t, s, 0, 10)
	_ = s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	for _, tail := range [][]byte{{0, 0}, {0, 0, 0, 9, 1, 2, 3, 4, 'x'}, {0, 0, 0, 2, 0, 0, 0, 0, '{', '}'}} {
		f, _ := os.OpenFile(segs[0], os.O_WRONLY|os.O_APPEND, 0)
		_, _ = f.Write(tail)
		f.Close()
		s = openSpool(t, dir, bridge.SpoolOptions{})
		if got := drainAll(t, s, false); !equal(got, bodies(0, 10)) {
			t.Errorf("tail %v: got %v", tail, got)
		}
		_ = s.Close()
	}
}

func TestSpoolFullRefusesNew(t *testing.T) {
	s := openSpool(t, t.TempDir(), bridge.SpoolOptions{MaxBytes: 160, SegmentBytes: 64})
	defer s.Close()
	appendN(t, s, 0, 10) // 16 bytes each with the header
	if err := s.Append([]byte(`{"n":10}`)); !errors.Is(err, bridge.ErrSpoolFull) {
		t.Fatalf("append to a full spool: %v, want ErrSpoolFull", err)
	}
	_ = s.Sync()
	es, _ := s.Poll(3, 1<<20)
	_ = s.Ack(es)
	appendN(t, s, 10, 3) // room again
	_ = s.Sync()
	if got := drainAll(t, s, true); !equal(got, bodies(3, 10)) {
		t.Errorf("got %v", got)
	}
}

func TestSpoolFullDropsOldest(t *testing.T) {
	s := openSpool(t, t.TempDir(), bridge.SpoolOptions{MaxBytes: 160, SegmentBytes: 64, WhenFull: bridge.DropOldest})
	defer s.Close()
	appendN(t, s, 0, 14)
	_ = s.Sync()
	st := s.Stats()
	if st.Dropped == 0 || st.Bytes > 160 {
		t.Fatalf("stats %+v: want drops and at most 160 bytes", st)
	}
	got := drainAll(t, s, true)
	if want := bodies(int(st.Dropped), 14-int(st.Dropped)); !equal(got, want) {
		t.Errorf("kept %v, want the newest %v", got, want)
	}
}

func TestSpoolRejectsBadPolicy(t *testing.T) {
	if _, err := bridge.OpenSpool(t.TempDir(), bridge.SpoolOptions{WhenFull: "block"}); err == nil {
		t.Fatal("unknown policy accepted")
	}
}
