// Package backoff holds what every retrying adapter needs: a sleep that ends
// with its context, and exponential backoff with full jitter.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Sleep waits for d, or until ctx is done, and then returns ctx's error.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Jitter is the delay before retry n (from 1): uniform in
// (0, min(ceiling, base·2^(n-1))], so concurrent retriers spread out.
func Jitter(n int, base, ceiling time.Duration) time.Duration {
	d := min(ceiling, base<<min(max(n-1, 0), 30))
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)) + 1)
}
