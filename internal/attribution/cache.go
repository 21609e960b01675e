package attribution

import "sync"

// cacheLimit bounds each map of the cache; past it the map starts over.
const cacheLimit = 50_000

// cache keeps what a warm processor has read or written. Records are only
// hints: every write is conditioned on the version, so a stale record costs
// a conflict and a re-read, never a lost update. The attacker → identity
// resolution is a hint too: it carries the membership version it was read
// at, and a record computed under another one refuses the write.
type cache struct {
	mu         sync.Mutex
	attackers  map[string]resolution
	records    map[SeriesKey]*SeriesRecord
	identities map[string]*IdentityRecord
}

func (c *cache) attacker(a string) (resolution, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.attackers[a]
	return r, ok
}

func (c *cache) putAttacker(a string, r resolution) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.attackers == nil || len(c.attackers) >= cacheLimit {
		c.attackers = make(map[string]resolution)
	}
	c.attackers[a] = r
}

func (c *cache) forgetAttackers(attackers []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range attackers {
		delete(c.attackers, a)
	}
}

// forgetIdentity drops an identity record and every series record of the
// identity.
func (c *cache) forgetIdentity(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.identities, id)
	for k := range c.records {
		if k.IdentityUUID == id {
			delete(c.records, k)
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
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putSeriesLocked(r.Clone())
}

func (c *cache) putSeriesLocked(r *SeriesRecord) {
	if c.records == nil || len(c.records) >= cacheLimit {
		c.records = make(map[SeriesKey]*SeriesRecord)
	}
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
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putIdentityLocked(r.Clone())
}

func (c *cache) putIdentityLocked(r *IdentityRecord) {
	if c.identities == nil || len(c.identities) >= cacheLimit {
		c.identities = make(map[string]*IdentityRecord)
	}
	c.identities[r.IdentityUUID] = r
}

// putCommitted caches what a successful commit stored.
func (c *cache) putCommitted(cm *Commit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range cm.Series {
		stored := r.Clone()
		stored.Version++
		c.putSeriesLocked(stored)
	}
	if cm.Identity != nil {
		stored := cm.Identity.Clone()
		stored.Version++
		c.putIdentityLocked(stored)
	}
}

// forget drops what a failed commit was based on.
func (c *cache) forget(cm *Commit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range cm.Series {
		delete(c.records, r.Key)
	}
	if cm.Identity != nil {
		delete(c.identities, cm.Identity.IdentityUUID)
	}
}

// putMembership caches what a successful membership change stored.
func (c *cache) putMembership(cm *MembershipCommit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range cm.Series {
		stored := r.Clone()
		stored.Version++
		c.putSeriesLocked(stored)
	}
	for _, r := range cm.Identities {
		stored := r.Clone()
		stored.Version++
		c.putIdentityLocked(stored)
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
