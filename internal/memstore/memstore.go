// Package memstore keeps observations, series records and identities in
// memory, with the same conditional semantics as the DynamoDB store. The
// replay command runs on it; tests use it as the reference store.
package memstore

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"decnet-attribution/internal/attribution"
)

var (
	_ attribution.Store      = (*Store)(nil)
	_ attribution.Identities = (*Store)(nil)
)

// Store is an in-memory attribution.Store and attribution.Identities.
type Store struct {
	mu           sync.Mutex
	attackers    map[string]*attribution.AttackerRecord
	observations map[attribution.SeriesKey]map[string]storedObservation
	records      map[attribution.SeriesKey]*attribution.SeriesRecord
	published    map[attribution.SeriesKey]int64
	identities   map[string]*attribution.IdentityRecord
}

// storedObservation is an observation item.
type storedObservation = attribution.StoredObservation

// New returns an empty store.
func New() *Store {
	return &Store{
		attackers:    make(map[string]*attribution.AttackerRecord),
		observations: make(map[attribution.SeriesKey]map[string]storedObservation),
		records:      make(map[attribution.SeriesKey]*attribution.SeriesRecord),
		published:    make(map[attribution.SeriesKey]int64),
		identities:   make(map[string]*attribution.IdentityRecord),
	}
}

// Identity implements attribution.Identities.
func (s *Store) Identity(_ context.Context, attacker, proposed string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.attackers[attacker]; ok {
		return r.IdentityUUID, nil
	}
	s.attackers[attacker] = &attribution.AttackerRecord{AttackerUUID: attacker, IdentityUUID: proposed}
	return proposed, nil
}

// LoadAttacker implements attribution.Identities.
func (s *Store) LoadAttacker(_ context.Context, attacker string) (*attribution.AttackerRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.attackers[attacker]; ok {
		c := *r
		return &c, nil
	}
	return &attribution.AttackerRecord{AttackerUUID: attacker}, nil
}

// LoadIdentitySeries implements attribution.Store.
func (s *Store) LoadIdentitySeries(_ context.Context, identity string) (map[string]*attribution.SeriesRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*attribution.SeriesRecord)
	for k, r := range s.records {
		if k.IdentityUUID == identity {
			c := r.Clone()
			c.Published = s.published[k]
			out[k.Primitive] = c
		}
	}
	return out, nil
}

// CommitMembership implements attribution.Store: all or nothing, checking
// every version before writing anything.
func (s *Store) CommitMembership(_ context.Context, c *attribution.MembershipCommit) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range c.Attackers {
		var stored int64
		if r, ok := s.attackers[a.AttackerUUID]; ok {
			stored = r.Version
		}
		if stored != a.Version {
			return fmt.Errorf("attacker %s: %w", a.AttackerUUID, attribution.ErrVersionConflict)
		}
	}
	for _, r := range c.Identities {
		if s.identityVersion(r.IdentityUUID) != r.Version {
			return fmt.Errorf("identity %s: %w", r.IdentityUUID, attribution.ErrVersionConflict)
		}
	}
	for _, r := range c.Series {
		if s.version(r.Key) != r.Version {
			return fmt.Errorf("series %s: %w", r.Key, attribution.ErrVersionConflict)
		}
	}
	for _, a := range c.Attackers {
		stored := *a
		stored.Version++
		s.attackers[a.AttackerUUID] = &stored
	}
	for _, r := range c.Identities {
		s.putIdentityLocked(r)
	}
	for _, r := range c.Series {
		s.putRecordLocked(r)
	}
	return nil
}

func (s *Store) identityVersion(id string) int64 {
	if r, ok := s.identities[id]; ok {
		return r.Version
	}
	return 0
}

// LoadSeries implements attribution.Store.
func (s *Store) LoadSeries(_ context.Context, identity string, primitives []string, _ bool) (map[string]*attribution.SeriesRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*attribution.SeriesRecord)
	for _, p := range primitives {
		k := attribution.SeriesKey{IdentityUUID: identity, Primitive: p}
		if r, ok := s.records[k]; ok {
			c := r.Clone()
			c.Published = s.published[k]
			out[p] = c
		}
	}
	return out, nil
}

// LoadIdentity implements attribution.Store.
func (s *Store) LoadIdentity(_ context.Context, identity string, _ bool) (*attribution.IdentityRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.identities[identity]; ok {
		c := r.Clone()
		c.Published = s.published[attribution.SeriesKey{IdentityUUID: identity, Primitive: attribution.IdentityRecordKey}]
		return c, nil
	}
	return &attribution.IdentityRecord{IdentityUUID: identity}, nil
}

// LoadObservations implements attribution.Store.
func (s *Store) LoadObservations(_ context.Context, key attribution.SeriesKey) ([]attribution.Observation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]attribution.Observation, 0, len(s.observations[key]))
	for _, o := range s.observations[key] {
		out = append(out, o.Observation)
	}
	return out, nil
}

// LookupObservations implements attribution.Store.
func (s *Store) LookupObservations(_ context.Context, refs []attribution.ObservationRef) (map[attribution.ObservationRef]attribution.StoredObservation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[attribution.ObservationRef]attribution.StoredObservation)
	for _, r := range refs {
		if o, ok := s.observations[r.Key][r.Ref]; ok {
			o.Events = slices.Clone(o.Events)
			out[r] = o
		}
	}
	return out, nil
}

// PutObservations implements attribution.Store: an item is replaced only by
// a later revision or by its own content.
func (s *Store) PutObservations(_ context.Context, writes []attribution.ObservationWrite) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range writes {
		old, exists := s.observations[w.Key][w.Observation.EvidenceRef]
		if exists && old.Revision != 0 && old.Revision >= w.Revision && old.Observation.Fingerprint() != w.Observation.Fingerprint() {
			continue // superseded
		}
		s.putLocked(w)
	}
	return nil
}

func (s *Store) putLocked(w attribution.ObservationWrite) {
	if s.observations[w.Key] == nil {
		s.observations[w.Key] = make(map[string]storedObservation)
	}
	s.observations[w.Key][w.Observation.EvidenceRef] = storedObservation{Observation: w.Observation, Revision: w.Revision}
}

// Commit implements attribution.Store: all or nothing, checking every
// condition before writing anything.
func (s *Store) Commit(_ context.Context, c *attribution.Commit) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, w := range c.Observations {
		old, exists := s.observations[w.Key][w.Observation.EvidenceRef]
		switch {
		case w.Replaces == "" && exists:
			return &attribution.ObservationExistsError{Index: i, Stored: old}
		case w.Replaces != "" && (!exists || old.Observation.Fingerprint() != w.Replaces):
			if !exists {
				return &attribution.ObservationGoneError{Index: i, EvidenceRef: w.Observation.EvidenceRef}
			}
			return &attribution.ObservationExistsError{Index: i, Stored: old}
		}
	}
	for _, r := range c.Series {
		if s.version(r.Key) != r.Version {
			return fmt.Errorf("series %s: %w", r.Key, attribution.ErrVersionConflict)
		}
	}
	if c.Identity != nil {
		if s.identityVersion(c.Identity.IdentityUUID) != c.Identity.Version {
			return fmt.Errorf("identity %s: %w", c.Identity.IdentityUUID, attribution.ErrVersionConflict)
		}
	}
	for _, w := range c.Observations {
		s.putLocked(w)
	}
	for _, r := range c.Series {
		s.putRecordLocked(r)
	}
	if c.Identity != nil {
		s.putIdentityLocked(c.Identity)
	}
	return nil
}

// putRecordLocked stores r at its next version with the acknowledged
// position it carries, as the DynamoDB store's update does.
func (s *Store) putRecordLocked(r *attribution.SeriesRecord) {
	stored := r.Clone()
	stored.Version++
	s.records[r.Key] = stored
	if r.Published > 0 {
		s.published[r.Key] = r.Published
	}
}

func (s *Store) putIdentityLocked(r *attribution.IdentityRecord) {
	stored := r.Clone()
	stored.Version++
	s.identities[stored.IdentityUUID] = stored
	if r.Published > 0 {
		s.published[attribution.SeriesKey{IdentityUUID: r.IdentityUUID, Primitive: attribution.IdentityRecordKey}] = r.Published
	}
}

func (s *Store) version(k attribution.SeriesKey) int64 {
	if r, ok := s.records[k]; ok {
		return r.Version
	}
	return 0
}

// Ack implements attribution.Store.
func (s *Store) Ack(_ context.Context, key attribution.SeriesKey, position int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if position > s.published[key] {
		s.published[key] = position
	}
	return nil
}

// IdentityRecords returns every identity record, by identity.
func (s *Store) IdentityRecords() map[string]*attribution.IdentityRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*attribution.IdentityRecord, len(s.identities))
	for id, r := range s.identities {
		out[id] = r.Clone()
	}
	return out
}

// Records returns every series record but orphans (which hold nothing
// acknowledged), sorted by identity and primitive.
func (s *Store) Records() []*attribution.SeriesRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*attribution.SeriesRecord, 0, len(s.records))
	for k, r := range s.records {
		if ident := s.identities[k.IdentityUUID]; ident != nil && r.Orphaned(ident.Membership) {
			continue
		}
		c := r.Clone()
		c.Published = s.published[k]
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key.IdentityUUID != out[j].Key.IdentityUUID {
			return out[i].Key.IdentityUUID < out[j].Key.IdentityUUID
		}
		return out[i].Key.Primitive < out[j].Key.Primitive
	})
	return out
}

// StoredObservations returns every observation stored of the attacker's
// series key, wherever it is: its items, overlaid by the observations
// records hold inline (newer than any item of theirs).
func (s *Store) StoredObservations(key attribution.SeriesKey) []attribution.Observation {
	s.mu.Lock()
	defer s.mu.Unlock()
	byRef := make(map[string]attribution.Observation)
	for ref, o := range s.observations[key] {
		byRef[ref] = o.Observation
	}
	for _, r := range s.records {
		for _, o := range r.Inline {
			if o.Ref().Key == key {
				byRef[o.Observation.EvidenceRef] = o.Observation
			}
		}
	}
	out := make([]attribution.Observation, 0, len(byRef))
	for _, o := range byRef {
		out = append(out, o)
	}
	return out
}
