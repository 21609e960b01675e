package attribution_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

// sizeLimitedStore refuses commits over DynamoDB's 4 MB per transaction,
// as DynamoDB does, and records the largest it took.
type sizeLimitedStore struct {
	*memstore.Store
	mu      sync.Mutex
	largest int
	commits int
}

func (s *sizeLimitedStore) Commit(ctx context.Context, c *attribution.Commit) error {
	n := c.Bytes()
	if n > attribution.MaxCommitBytes {
		return fmt.Errorf("transaction of %d items is %d bytes, over 4 MB", c.Items(), n)
	}
	s.mu.Lock()
	s.largest, s.commits = max(s.largest, n), s.commits+1
	s.mu.Unlock()
	return s.Store.Commit(ctx, c)
}

// TestCommitsCutBySize: one identity's batch touching 45 series whose
// records are near the largest a series can have (a full window of 1 KB
// values) is committed in several transactions of at most 4 MB, not one
// that DynamoDB would refuse on every delivery.
func TestCommitsCutBySize(t *testing.T) {
	th := attribution.DefaultThresholds()
	th.Window = attribution.MaxWindow
	store := &sizeLimitedStore{Store: memstore.New()}
	p := newProcessor(store, &recorder{}, attribution.BuiltinRegistry(), th)
	const primitives, history = 45, 2 * attribution.MaxWindow
	msg := func(prim, n int) []byte {
		return spec{
			Attacker: "att-large", Primitive: fmt.Sprintf("cognitive.custom_%02d", prim), Ref: fmt.Sprintf("r%04d", n),
			TS: float64(1764000000 + n), Value: fmt.Sprintf(`"%02d-%04d-%s"`, prim, n, strings.Repeat("v", 1000)), Confidence: 0.5,
		}.body()
	}
	for prim := range primitives {
		var bodies [][]byte
		for n := range history {
			bodies = append(bodies, msg(prim, n))
		}
		for i, err := range p.Process(context.Background(), messages(bodies)) {
			if err != nil {
				t.Fatalf("history of primitive %d, message %d: %v", prim, i, err)
			}
		}
	}
	before := store.commits
	var batch [][]byte
	for prim := range primitives {
		batch = append(batch, msg(prim, history))
	}
	for i, err := range p.Process(context.Background(), messages(batch)) {
		if err != nil {
			t.Fatalf("batch message %d: %v", i, err)
		}
	}
	if got := store.commits - before; got < 2 {
		t.Fatalf("the batch took %d commit(s); its records alone are over 4 MB", got)
	}
	t.Logf("largest commit %d bytes in %d commits", store.largest, store.commits-before)
}
