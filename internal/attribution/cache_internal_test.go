package attribution

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// largeRecord is a categorical record whose kept tail holds 100 distinct
// values of about 1 KB: one of the largest records a series can have.
func largeRecord(i int) *SeriesRecord {
	th := DefaultThresholds()
	th.Window = MaxWindow
	th.CategoricalMajority = MaxWindow
	key := SeriesKey{IdentityUUID: fmt.Sprintf("id-%04d", i), Primitive: "motor.input_modality"}
	rec := NewSeriesRecord(key, Categorical, th)
	for j := range 2 * MaxWindow {
		v := fmt.Sprintf(`"%04d-%04d-%s"`, i, j, strings.Repeat("x", 1000))
		rec.Series.Add(Point{TS: float64(j), Ref: fmt.Sprintf("r%d", j), Value: Value(v)})
	}
	return rec
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestCacheBoundedByBytes: large records fill the cache up to its byte
// budget, not up to an entry count (50,000 of these would be ~5 GB).
func TestCacheBoundedByBytes(t *testing.T) {
	const limit = 4 << 20
	var c cache
	c.bound(limit)
	before := heapInUse()
	for i := range 200 {
		rec := largeRecord(i)
		if i%2 == 0 {
			c.putSeries(rec)
		} else {
			c.putCommitted(&Commit{Series: []*SeriesRecord{rec}})
		}
		if c.bytes > limit {
			t.Fatalf("after %d records the cache counts %d bytes, over its %d budget", i+1, c.bytes, limit)
		}
	}
	held := int64(heapInUse()) - int64(before)
	if held > 3*limit {
		t.Fatalf("the cache holds %d bytes of heap for a %d byte budget", held, limit)
	}
	if len(c.records) == 0 || len(c.records) == 200 {
		t.Fatalf("cache holds %d of 200 records; want some, not all", len(c.records))
	}
	runtime.KeepAlive(&c)
}

// TestCacheAccountsReplacedAndForgotten: replacing or forgetting an entry
// gives back its bytes.
func TestCacheAccountsReplacedAndForgotten(t *testing.T) {
	var c cache
	rec := largeRecord(1)
	c.putSeries(rec)
	one := c.bytes
	c.putSeries(rec)
	c.putCommitted(&Commit{Series: []*SeriesRecord{rec}})
	if c.bytes != one {
		t.Fatalf("the same record counted %d bytes after replacing, %d once", c.bytes, one)
	}
	c.putAttacker("att-1", resolution{identity: "id-1", membership: 3, members: []string{"att-1"}})
	c.forget(&Commit{Series: []*SeriesRecord{rec}})
	if _, ok := c.series(rec.Key); ok || c.bytes >= one {
		t.Fatalf("forgotten record still counted: %d bytes (record alone %d)", c.bytes, one)
	}
	if r, ok := c.attacker("att-1"); !ok || r.identity != "id-1" {
		t.Fatal("forgetting a record dropped the attacker mapping")
	}
	c.forgetIdentity("id-1")
	c.forgetAttackers([]string{"att-1"})
	if _, ok := c.attacker("att-1"); ok || c.bytes != 0 {
		t.Fatalf("forgotten attacker still cached, or %d bytes still counted", c.bytes)
	}
}
