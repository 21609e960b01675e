package attribution

import (
	"encoding/json"
	"sync"
)

// DefaultCacheBytes bounds the warm cache when Processor.CacheBytes is 0.
const DefaultCacheBytes = 32 << 20

// entryOverhead is what an entry costs beyond its encoded size: map slot,
// key strings, pointers.
const entryOverhead = 128

// cache keeps what a warm processor has read or written. Records are only
// hints: every write is conditioned on the version, so a stale record costs
// a conflict and a re-read, never a lost update. The attacker → identity
// resolution is a hint too: it carries the membership version it was read
// at, and a record computed under another one refuses the write.
//
// It is bounded by the bytes its entries encode to (a record's JSON), not
// by their number: one record can be ~100 KB, another 300 bytes. Past the
// bound it starts over.
type cache struct {
	mu         sync.Mutex
	limit      int64 // 0: DefaultCacheBytes
	bytes      int64
	attackers  map[string]resolution
	records    map[SeriesKey]*SeriesRecord
	identities map[string]*IdentityRecord
	sizes      map[any]int64 // bytes counted per entry, by key
}

// bound sets the byte budget (0: DefaultCacheBytes).
func (c *cache) bound(limit int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.limit = limit
}

// account replaces the bytes counted for key by size, starting over first
// when the budget would be exceeded. Call with c.mu held.
func (c *cache) account(key any, size int64) {
	limit := c.limit
	if limit <= 0 {
		limit = DefaultCacheBytes
	}
	old := c.sizes[key]
	if c.sizes == nil || c.bytes-old+size > limit {
		c.attackers = make(map[string]resolution)
		c.records = make(map[SeriesKey]*SeriesRecord)
		c.identities = make(map[string]*IdentityRecord)
		c.sizes = make(map[any]int64)
		c.bytes, old = 0, 0
	}
	c.sizes[key] = size
	c.bytes += size - old
}

// drop removes key's bytes. Call with c.mu held.
func (c *cache) drop(key any) {
	c.bytes -= c.sizes[key]
	delete(c.sizes, key)
}

// encodedSize is v's JSON size plus entryOverhead.
func encodedSize(v any) int64 {
	b, err := json.Marshal(v)
	if err != nil {
		return 64 << 10 // cannot happen for records; count it as large
	}
	return int64(len(b)) + entryOverhead
}

type attackerKey string

type identityKey string

func (c *cache) attacker(a string) (resolution, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.attackers[a]
	return r, ok
}

func (c *cache) putAttacker(a string, r resolution) {
	size := int64(len(a)+len(r.identity)) + entryOverhead
	for _, m := range r.members {
		size += int64(len(m))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.account(attackerKey(a), size)
	c.attackers[a] = r
}

func (c *cache) forgetAttackers(attackers []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range attackers {
		delete(c.attackers, a)
		c.drop(attackerKey(a))
	}
}

// forgetIdentityRecord drops an identity record alone.
func (c *cache) forgetIdentityRecord(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.identities, id)
	c.drop(identityKey(id))
}

// forgetIdentity drops an identity record and every series record of the
// identity.
func (c *cache) forgetIdentity(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.identities, id)
	c.drop(identityKey(id))
	for k := range c.records {
		if k.IdentityUUID == id {
			delete(c.records, k)
			c.drop(k)
		}
	}
}

// series returns a working copy of a cached record.
func (c *cache) series(k SeriesKey) (*SeriesRecord, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.records[k]
	if !ok {
		return nil, false
	}
	return r.Clone(), true
}

func (c *cache) putSeries(r *SeriesRecord) {
	stored := r.Clone()
	size := encodedSize(stored)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putSeriesLocked(stored, size)
}

func (c *cache) putSeriesLocked(r *SeriesRecord, size int64) {
	c.account(r.Key, size)
	c.records[r.Key] = r
}

func (c *cache) identity(id string) (*IdentityRecord, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.identities[id]
	if !ok {
		return nil, false
	}
	return r.Clone(), true
}

func (c *cache) putIdentity(r *IdentityRecord) {
	stored := r.Clone()
	size := encodedSize(stored)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putIdentityLocked(stored, size)
}

func (c *cache) putIdentityLocked(r *IdentityRecord, size int64) {
	c.account(identityKey(r.IdentityUUID), size)
	c.identities[r.IdentityUUID] = r
}

// putCommitted caches what a successful commit stored.
func (c *cache) putCommitted(cm *Commit) {
	// Copies and sizes are made outside the lock: encoding a large record
	// takes a while, and other identities' units wait on the lock.
	records := make([]*SeriesRecord, len(cm.Series))
	sizes := make([]int64, len(cm.Series))
	for i, r := range cm.Series {
		records[i] = r.Clone()
		records[i].Version++
		sizes[i] = encodedSize(records[i])
	}
	var ident *IdentityRecord
	var identSize int64
	if cm.Identity != nil {
		ident = cm.Identity.Clone()
		ident.Version++
		identSize = encodedSize(ident)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, r := range records {
		c.putSeriesLocked(r, sizes[i])
	}
	if ident != nil {
		c.putIdentityLocked(ident, identSize)
	}
}

// forget drops what a failed commit was based on.
func (c *cache) forget(cm *Commit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range cm.Series {
		delete(c.records, r.Key)
		c.drop(r.Key)
	}
	if cm.Identity != nil {
		delete(c.identities, cm.Identity.IdentityUUID)
		c.drop(identityKey(cm.Identity.IdentityUUID))
	}
}

// putMembership caches what a successful membership change stored.
func (c *cache) putMembership(cm *MembershipCommit) {
	c.putCommitted(&Commit{Series: cm.Series})
	for _, r := range cm.Identities {
		stored := r.Clone()
		stored.Version++
		c.putIdentity(stored)
	}
}

// markWritten notes, on the cached record, that items of its inline
// observations are stored: its next commit lets go of them.
func (c *cache) markWritten(k SeriesKey, refs []ObservationRef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.records[k]; ok {
		r.markWritten(refs)
	}
}

func (c *cache) ack(k SeriesKey, pos int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k.Primitive == IdentityRecordKey {
		if r, ok := c.identities[k.IdentityUUID]; ok && r.Published < pos {
			r.Published = pos
		}
		return
	}
	if r, ok := c.records[k]; ok && r.Published < pos {
		r.Published = pos
	}
}
