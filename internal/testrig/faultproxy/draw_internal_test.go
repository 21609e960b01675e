package faultproxy

import (
	"math"
	"testing"
)

func TestDrawsAreReproducibleAndUniform(t *testing.T) {
	op := Op{Service: DynamoDB, Name: "PutItem"}
	if a, b := newDraws(5, op, 9).float(), newDraws(5, op, 9).float(); a != b {
		t.Errorf("same seed, op and sequence: draws %v and %v differ", a, b)
	}
	if a, b := newDraws(5, op, 9).float(), newDraws(6, op, 9).float(); a == b {
		t.Errorf("different seeds gave the same draw %v", a)
	}
	if a, b := newDraws(5, op, 9).float(), newDraws(5, Op{Service: DynamoDB, Name: "GetItem"}, 9).float(); a == b {
		t.Errorf("different operations gave the same draw %v", a)
	}

	// The first draw over consecutive sequence numbers, as the proxy uses it,
	// falls into each tenth of [0, 1) about equally often.
	const n = 20000
	var buckets [10]int
	for seq := range uint64(n) {
		u := newDraws(42, op, seq).float()
		if u < 0 || u >= 1 {
			t.Fatalf("draw %v outside [0, 1)", u)
		}
		buckets[int(u*10)]++
	}
	for i, got := range buckets {
		if math.Abs(float64(got)-n/10) > 5*math.Sqrt(n*0.1*0.9) {
			t.Errorf("bucket %d holds %d of %d draws, want about %d", i, got, n, n/10)
		}
	}
}
