package operator

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// barWidth is the number of cells of a progress bar.
const barWidth = 30

// Bar draws a progress bar on one terminal line, redrawn in place at most
// ten times a second. It is safe for concurrent use.
type Bar struct {
	mu    sync.Mutex
	w     io.Writer
	label string
	total int64 // 0: unknown, the bar shows a count
	last  time.Time
	now   func() time.Time
}

// NewBar returns a bar writing to w (a terminal). total is what done
// counts up to, or 0 when unknown.
func NewBar(w io.Writer, label string, total int64) *Bar {
	return &Bar{w: w, label: label, total: total, now: time.Now}
}

// Set redraws the bar with done units and a detail text, unless it was
// drawn less than 100 ms ago.
func (b *Bar) Set(done int64, detail string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now := b.now(); now.Sub(b.last) >= 100*time.Millisecond {
		b.last = now
		b.draw(done, detail)
	}
}

// Finish draws the final state and ends the line.
func (b *Bar) Finish(done int64, detail string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draw(done, detail)
	fmt.Fprintln(b.w)
}

func (b *Bar) draw(done int64, detail string) {
	line := renderBar(b.label, done, b.total, detail)
	fmt.Fprintf(b.w, "\r%s\x1b[K", line)
}

// renderBar is one frame of the bar.
func renderBar(label string, done, total int64, detail string) string {
	var s strings.Builder
	s.WriteString(label)
	if total > 0 {
		frac := min(1, float64(done)/float64(total))
		cells := int(frac * barWidth)
		fmt.Fprintf(&s, " [%s%s] %3d%% %d/%d", strings.Repeat("#", cells), strings.Repeat(".", barWidth-cells), int(frac*100), done, total)
	} else {
		fmt.Fprintf(&s, " %d", done)
	}
	if detail != "" {
		s.WriteString("  ")
		s.WriteString(detail)
	}
	return s.String()
}
