package bridge

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Spool defaults.
const (
	DefaultSpoolMaxBytes     = 1 << 30 // 1 GiB of unsent events
	DefaultSpoolSegmentBytes = 8 << 20
	// maxRecordBytes bounds one record: a bus body is at most 1 MiB.
	maxRecordBytes = 1<<20 + 4096
	recordHeader   = 8 // length, CRC-32C
)

// FullPolicy is what a full spool does with a new event.
type FullPolicy string

const (
	// RefuseNew keeps what the spool holds and refuses new events: they are
	// never accepted (counted as refused); DECNET's database still has them
	// for a backfill.
	RefuseNew FullPolicy = "refuse-new"
	// DropOldest discards the oldest unsent segment to make room: accepted
	// events are lost (counted as dropped), the newest are kept.
	DropOldest FullPolicy = "drop-oldest"
)

// ErrSpoolFull is returned by Append when the spool is full and its
// policy is RefuseNew.
var ErrSpoolFull = errors.New("spool full")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Position is a place in the spool: a segment and a byte offset in it.
type Position struct {
	Seg uint64
	Off int64
}

func (p Position) before(q Position) bool {
	return p.Seg < q.Seg || (p.Seg == q.Seg && p.Off < q.Off)
}

// Entry is one spooled event: its bytes and the position just after it.
type Entry struct {
	Data []byte
	seg  uint64
	End  Position
}

// SpoolOptions tune a spool.
type SpoolOptions struct {
	// MaxBytes bounds the unsent events on disk; 0 means
	// DefaultSpoolMaxBytes.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment file starts; 0
	// means DefaultSpoolSegmentBytes.
	SegmentBytes int64
	// WhenFull is the full-spool policy; "" means RefuseNew.
	WhenFull FullPolicy
	Logger   *slog.Logger
}

// Spool is an append-only on-disk queue of events: segment files of
// length- and CRC-framed records, and a cursor file naming the first
// event not yet acknowledged. Appends become visible to readers only once
// synced (Sync), so nothing is sent that a crash could take back.
type Spool struct {
	dir  string
	opts SpoolOptions
	log  *slog.Logger

	mu       sync.Mutex
	segs     []*segment // oldest first; the last is written to
	w        *os.File
	bw       *bufio.Writer
	writeEnd Position // after the last appended record
	synced   Position // after the last synced record
	cursor   Position // first unacknowledged record
	readPos  Position // next record Next returns
	readFile *os.File
	readSeg  uint64
	changed  chan struct{} // closed when synced moves or the spool closes
	closed   bool

	appended, syncedEntries, dropped int64
	unsynced                         int64 // records appended since the last sync
}

type segment struct {
	id      uint64
	entries int64 // records not yet acknowledged
	bytes   int64 // their bytes
}

func segName(id uint64) string { return fmt.Sprintf("seg-%016d.log", id) }

// OpenSpool opens (or creates) the spool in dir. A record torn by a crash
// at the end of a segment is cut off; records after a corrupt one in a
// segment are cut off too, and the loss is logged.
func OpenSpool(dir string, opts SpoolOptions) (*Spool, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultSpoolMaxBytes
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSpoolSegmentBytes
	}
	if opts.WhenFull == "" {
		opts.WhenFull = RefuseNew
	}
	if opts.WhenFull != RefuseNew && opts.WhenFull != DropOldest {
		return nil, fmt.Errorf("spool: full policy %q is neither %s nor %s", opts.WhenFull, RefuseNew, DropOldest)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{dir: dir, opts: opts, log: opts.Logger, changed: make(chan struct{})}
	ids, err := s.segmentIDs()
	if err != nil {
		return nil, err
	}
	cursor, err := s.readCursor()
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if id < cursor.Seg {
			_ = os.Remove(filepath.Join(dir, segName(id)))
			continue
		}
		seg, err := s.recover(id, cursor)
		if err != nil {
			return nil, err
		}
		if seg.entries == 0 { // wholly acknowledged
			_ = os.Remove(filepath.Join(dir, segName(id)))
			continue
		}
		s.segs = append(s.segs, seg)
	}
	next := cursor.Seg + 1
	if len(s.segs) > 0 {
		next = max(next, s.segs[len(s.segs)-1].id+1)
	}
	if len(s.segs) > 0 && cursor.Seg < s.segs[0].id {
		cursor = Position{Seg: s.segs[0].id}
	} else if len(s.segs) == 0 {
		cursor = Position{Seg: next}
	}
	if err := s.startSegment(next); err != nil {
		return nil, err
	}
	s.cursor, s.readPos = cursor, cursor
	s.synced = s.writeEnd
	return s, nil
}

func (s *Spool) segmentIDs() ([]uint64, error) {
	names, err := filepath.Glob(filepath.Join(s.dir, "seg-*.log"))
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for _, n := range names {
		id, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(n), "seg-"), ".log"), 10, 64)
		if err == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// recover scans a segment, cutting off a torn or corrupt tail, and counts
// its records at or after the cursor.
func (s *Spool) recover(id uint64, cursor Position) (*segment, error) {
	path := filepath.Join(s.dir, segName(id))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	seg := &segment{id: id}
	r := bufio.NewReaderSize(f, 1<<16)
	var off int64
	for {
		data, err := readRecord(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fi, _ := f.Stat()
			lost := int64(0)
			if fi != nil {
				lost = fi.Size() - off
			}
			s.log.Warn("spool: cutting off a torn or corrupt segment tail", "segment", path, "offset", off, "bytes", lost, "error", err)
			if err := f.Truncate(off); err != nil {
				return nil, fmt.Errorf("spool: truncate %s: %w", path, err)
			}
			if err := f.Sync(); err != nil {
				return nil, fmt.Errorf("spool: %w", err)
			}
			break
		}
		size := int64(recordHeader + len(data))
		if id > cursor.Seg || off >= cursor.Off {
			seg.entries++
			seg.bytes += size
		}
		off += size
	}
	return seg, nil
}

func readRecord(r io.Reader) ([]byte, error) {
	var h [recordHeader]byte
	n, err := io.ReadFull(r, h[:])
	if errors.Is(err, io.EOF) && n == 0 {
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("torn record header: %w", err)
	}
	size := binary.BigEndian.Uint32(h[:4])
	if size == 0 || size > maxRecordBytes {
		return nil, fmt.Errorf("record length %d out of range", size)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("torn record: %w", err)
	}
	if crc32.Checksum(data, crcTable) != binary.BigEndian.Uint32(h[4:]) {
		return nil, errors.New("record checksum mismatch")
	}
	return data, nil
}

func (s *Spool) startSegment(id uint64) error {
	path := filepath.Join(s.dir, segName(id))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("spool: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	s.w, s.bw = f, bufio.NewWriterSize(f, 1<<16)
	s.writeEnd = Position{Seg: id, Off: fi.Size()}
	if n := len(s.segs); n == 0 || s.segs[n-1].id != id {
		s.segs = append(s.segs, &segment{id: id})
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: sync %s: %w", dir, err)
	}
	return nil
}

// Append adds an event. It is durable, and visible to Next, after the
// next Sync. A full spool refuses it (ErrSpoolFull) or first drops its
// oldest segment, as its policy says.
func (s *Spool) Append(data []byte) error {
	if len(data) == 0 || len(data) > maxRecordBytes {
		return fmt.Errorf("spool: an event of %d bytes cannot be spooled", len(data))
	}
	size := int64(recordHeader + len(data))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("spool: closed")
	}
	for s.depthBytesLocked()+size > s.opts.MaxBytes {
		if s.opts.WhenFull == RefuseNew {
			return ErrSpoolFull
		}
		if err := s.dropOldestLocked(); err != nil {
			return err
		}
	}
	if s.writeEnd.Off >= s.opts.SegmentBytes {
		if err := s.rollLocked(); err != nil {
			return err
		}
	}
	var h [recordHeader]byte
	binary.BigEndian.PutUint32(h[:4], uint32(len(data)))
	binary.BigEndian.PutUint32(h[4:], crc32.Checksum(data, crcTable))
	if _, err := s.bw.Write(h[:]); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if _, err := s.bw.Write(data); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.writeEnd.Off += size
	seg := s.segs[len(s.segs)-1]
	seg.entries++
	seg.bytes += size
	s.appended++
	s.unsynced++
	return nil
}

// rollLocked syncs and closes the segment being written and starts the
// next one.
func (s *Spool) rollLocked() error {
	if err := s.syncLocked(); err != nil {
		return err
	}
	if err := s.w.Close(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return s.startSegment(s.writeEnd.Seg + 1)
}

// dropOldestLocked discards the oldest segment, or, when only the segment
// being written is left, starts a new one and discards that.
func (s *Spool) dropOldestLocked() error {
	if len(s.segs) == 1 {
		if s.segs[0].entries == 0 {
			return errors.New("spool: an event larger than the whole spool")
		}
		if err := s.rollLocked(); err != nil {
			return err
		}
	}
	old := s.segs[0]
	s.segs = s.segs[1:]
	s.dropped += old.entries
	next := Position{Seg: s.segs[0].id}
	if err := s.writeCursor(next); err != nil {
		return err
	}
	s.cursor = next
	if s.readPos.before(next) {
		s.readPos = next
	}
	if s.readFile != nil && s.readSeg == old.id {
		s.readFile.Close()
		s.readFile = nil
	}
	_ = os.Remove(filepath.Join(s.dir, segName(old.id)))
	s.log.Warn("spool full: dropped the oldest unsent events", "events", old.entries, "bytes", old.bytes, "policy", string(DropOldest), "max_bytes", s.opts.MaxBytes)
	return nil
}

// Sync makes every appended event durable and visible to Next. The fsync
// runs without the lock, so appends go on meanwhile (they wait for the
// next Sync).
func (s *Spool) Sync() error {
	s.mu.Lock()
	if s.closed || s.synced == s.writeEnd {
		s.mu.Unlock()
		return nil
	}
	if err := s.bw.Flush(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("spool: %w", err)
	}
	file, target, n := s.w, s.writeEnd, s.unsynced
	s.unsynced = 0
	s.mu.Unlock()

	err := file.Sync()

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.w != file || s.closed {
			// The segment was rolled or the spool closed meanwhile; both
			// synced it under the lock.
			s.syncedEntries += n
			return nil
		}
		s.unsynced += n
		return fmt.Errorf("spool: fsync: %w", err)
	}
	if s.synced.before(target) {
		s.synced = target
		s.syncedEntries += n
		close(s.changed)
		s.changed = make(chan struct{})
	} else {
		s.syncedEntries += n
	}
	return nil
}

func (s *Spool) syncLocked() error {
	if s.synced == s.writeEnd {
		return nil
	}
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := s.w.Sync(); err != nil {
		return fmt.Errorf("spool: fsync: %w", err)
	}
	s.synced = s.writeEnd
	s.syncedEntries += s.unsynced
	s.unsynced = 0
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// Next returns up to maxEntries synced events after the last ones it
// returned, together at most maxBytes (at least one event). It waits
// until there is one; ctx ends the wait.
func (s *Spool) Next(ctx context.Context, maxEntries int, maxBytes int) ([]Entry, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, errors.New("spool: closed")
		}
		if s.readPos.before(s.synced) {
			out, err := s.readLocked(maxEntries, maxBytes)
			s.mu.Unlock()
			return out, err
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}

// rewind makes Next return again every event not yet acknowledged.
func (s *Spool) rewind() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readPos = s.cursor
}

// Poll is Next without the wait: it returns what is synced now, perhaps
// nothing.
func (s *Spool) Poll(maxEntries int, maxBytes int) ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("spool: closed")
	}
	return s.readLocked(maxEntries, maxBytes)
}

func (s *Spool) readLocked(maxEntries int, maxBytes int) ([]Entry, error) {
	var out []Entry
	total := 0
	for len(out) < maxEntries && s.readPos.before(s.synced) {
		seg := s.segmentLocked(s.readPos.Seg)
		end := s.segmentEndLocked(s.readPos.Seg)
		if seg == nil || s.readPos.Off >= end {
			// Past the end of this segment: on to the next one.
			nextID := s.readPos.Seg + 1
			for _, sg := range s.segs {
				if sg.id > s.readPos.Seg {
					nextID = sg.id
					break
				}
			}
			s.readPos = Position{Seg: nextID}
			continue
		}
		if s.readFile == nil || s.readSeg != s.readPos.Seg {
			if s.readFile != nil {
				s.readFile.Close()
			}
			f, err := os.Open(filepath.Join(s.dir, segName(s.readPos.Seg)))
			if err != nil {
				return out, fmt.Errorf("spool: %w", err)
			}
			s.readFile, s.readSeg = f, s.readPos.Seg
		}
		data, err := readRecord(io.NewSectionReader(s.readFile, s.readPos.Off, end-s.readPos.Off))
		if err != nil {
			return out, fmt.Errorf("spool: read %s at %d: %w", segName(s.readPos.Seg), s.readPos.Off, err)
		}
		if len(out) > 0 && total+len(data) > maxBytes {
			break
		}
		s.readPos.Off += int64(recordHeader + len(data))
		out = append(out, Entry{Data: data, seg: s.readPos.Seg, End: s.readPos})
		total += len(data)
	}
	return out, nil
}

func (s *Spool) segmentLocked(id uint64) *segment {
	for _, sg := range s.segs {
		if sg.id == id {
			return sg
		}
	}
	return nil
}

// segmentEndLocked is how far a segment may be read: its synced end.
func (s *Spool) segmentEndLocked(id uint64) int64 {
	switch {
	case id < s.synced.Seg:
		fi, err := os.Stat(filepath.Join(s.dir, segName(id)))
		if err != nil {
			return 0
		}
		return fi.Size()
	case id == s.synced.Seg:
		return s.synced.Off
	}
	return 0
}

// Ack records that entries, returned by Next and in the order returned,
// reached the queue: the cursor moves past the last one, and segments
// wholly behind it are deleted. Acknowledging entries a full spool has
// already dropped is harmless.
func (s *Spool) Ack(entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		if e.End.before(s.cursor) || e.End == s.cursor {
			continue
		}
		if seg := s.segmentLocked(e.seg); seg != nil {
			seg.entries--
			seg.bytes -= int64(recordHeader + len(e.Data))
		}
	}
	end := entries[len(entries)-1].End
	if !s.cursor.before(end) {
		return nil
	}
	if err := s.writeCursor(end); err != nil {
		return err
	}
	s.cursor = end
	for len(s.segs) > 1 && s.segs[0].id < end.Seg {
		old := s.segs[0]
		s.segs = s.segs[1:]
		if s.readFile != nil && s.readSeg == old.id {
			s.readFile.Close()
			s.readFile = nil
		}
		_ = os.Remove(filepath.Join(s.dir, segName(old.id)))
	}
	return nil
}

func (s *Spool) cursorPath() string { return filepath.Join(s.dir, "cursor") }

func (s *Spool) readCursor() (Position, error) {
	b, err := os.ReadFile(s.cursorPath())
	if errors.Is(err, os.ErrNotExist) {
		return Position{}, nil
	}
	if err != nil {
		return Position{}, fmt.Errorf("spool: %w", err)
	}
	var p Position
	if _, err := fmt.Sscanf(string(b), "%d %d", &p.Seg, &p.Off); err != nil {
		// An unreadable cursor sends everything again: the service's
		// dedupe makes that harmless.
		s.log.Warn("spool: unreadable cursor; sending every spooled event again", "error", err)
		return Position{}, nil
	}
	return p, nil
}

// writeCursor replaces the cursor file atomically and durably.
func (s *Spool) writeCursor(p Position) error {
	tmp := s.cursorPath() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d %d\n", p.Seg, p.Off)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.cursorPath())
	}
	if err != nil {
		return fmt.Errorf("spool: write cursor: %w", err)
	}
	return syncDir(s.dir)
}

// SpoolStats counts a spool's events.
type SpoolStats struct {
	Appended int64 // appended since open
	Synced   int64 // of those, durable
	Dropped  int64 // discarded by the DropOldest policy
	Depth    int64 // events not yet acknowledged (on disk)
	Bytes    int64 // their bytes
}

// Stats returns the counters.
func (s *Spool) Stats() SpoolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SpoolStats{Appended: s.appended, Synced: s.syncedEntries, Dropped: s.dropped}
	for _, sg := range s.segs {
		st.Depth += sg.entries
		st.Bytes += sg.bytes
	}
	return st
}

func (s *Spool) depthBytesLocked() int64 {
	var n int64
	for _, sg := range s.segs {
		n += sg.bytes
	}
	return n
}

// Close syncs and closes the spool.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	err := s.syncLocked()
	s.closed = true
	close(s.changed)
	if s.readFile != nil {
		s.readFile.Close()
	}
	if cerr := s.w.Close(); err == nil {
		err = cerr
	}
	return err
}
