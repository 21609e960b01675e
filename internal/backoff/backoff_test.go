package backoff_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"decnet-attribution/internal/backoff"
)

func TestJitterStaysWithinTheCeiling(t *testing.T) {
	for n := 1; n <= 40; n++ {
		limit := min(time.Second, (10*time.Millisecond)<<min(n-1, 30))
		for range 50 {
			if d := backoff.Jitter(n, 10*time.Millisecond, time.Second); d <= 0 || d > limit {
				t.Fatalf("retry %d: delay %v outside (0, %v]", n, d, limit)
			}
		}
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := backoff.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a done context: %v", err)
	}
	if err := backoff.Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep: %v", err)
	}
}
