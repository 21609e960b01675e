package attribution

import (
	"context"
	"fmt"
)

// MaxCommitItems is how many items one Commit may write: DynamoDB's limit
// on the actions of one transaction.
const MaxCommitItems = 100

// MaxCommitBytes is how large the items of one Commit may be together, as
// Commit.Bytes counts them: DynamoDB's 4 MB limit on one transaction.
const MaxCommitBytes = 4 << 20

// commitItemOverhead bounds what a store adds to an item's JSON: keys,
// attribute names, version and TTL numbers, compression framing.
const commitItemOverhead = 1024

// Identities resolves attackers to identities.
type Identities interface {
	// Identity returns the identity of attacker. On first sight it stores
	// proposed; when concurrent first sightings race, every caller gets the
	// identity stored first. The mapping never changes once stored.
	//
	// The identity is the attacker's literal one: its stub, or DECNET's once
	// an identity event named it (CommitMembership changes it).
	Identity(ctx context.Context, attackerUUID, proposed string) (string, error)
	// LoadAttacker reads the attacker's record consistently; one never seen
	// has an empty IdentityUUID and Version 0.
	LoadAttacker(ctx context.Context, attackerUUID string) (*AttackerRecord, error)
}

// Store keeps observations, series records and identity records.
type Store interface {
	// LoadSeries returns the stored records of some primitives of one
	// identity, keyed by primitive; a primitive with no record is absent.
	// With consistent false the read may be slightly stale (it is cheaper);
	// writes are conditioned on versions either way.
	LoadSeries(ctx context.Context, identityUUID string, primitives []string, consistent bool) (map[string]*SeriesRecord, error)
	// LoadIdentity returns the identity record, or a new one (Version 0),
	// with the acknowledged position of its outbox.
	LoadIdentity(ctx context.Context, identityUUID string, consistent bool) (*IdentityRecord, error)
	// LoadIdentitySeries returns every series record of an identity, read
	// consistently, keyed by primitive.
	LoadIdentitySeries(ctx context.Context, identityUUID string) (map[string]*SeriesRecord, error)
	// LoadObservations returns every stored observation item of a series,
	// read consistently, in no particular order. Observations still inline
	// in a record are not among them.
	LoadObservations(ctx context.Context, key SeriesKey) ([]Observation, error)
	// LookupObservations reads the observation items under refs
	// consistently; a ref with no item is absent from the answer.
	LookupObservations(ctx context.Context, refs []ObservationRef) (map[ObservationRef]StoredObservation, error)
	// PutObservations writes the items of observations already applied to
	// their records. Each write is idempotent and never replaces an item of
	// a later revision; writes already superseded succeed.
	PutObservations(ctx context.Context, writes []ObservationWrite) error
	// Commit writes all of c or nothing. It fails with an
	// *ObservationExistsError when an observation's condition fails, with
	// an *ObservationGoneError when an amendment's target is not stored,
	// and with an error wrapping ErrVersionConflict when a record's stored
	// version is not the one read. Records are stored with Version+1 and
	// their Published position. A commit of one record and nothing else is
	// one conditional write of one item; anything more is a transaction.
	Commit(ctx context.Context, c *Commit) error
	// CommitMembership writes all of c or nothing; it fails with an error
	// wrapping ErrVersionConflict when any record's or attacker's stored
	// version is not the one read. Everything is stored with Version+1.
	CommitMembership(ctx context.Context, c *MembershipCommit) error
	// Ack records that the events of a series' outbox up to position were
	// accepted by the bus. It never lowers the acknowledged position. Only
	// outbox events need it; events stored with observations need none. A
	// key whose primitive is IdentityRecordKey acknowledges the identity
	// record's outbox.
	Ack(ctx context.Context, key SeriesKey, position int64) error
}

// Commit is one atomic write: records, with the observation items written
// in the same transaction (the transactional design; none in the
// incremental one, where the records hold what they applied inline).
type Commit struct {
	Observations []ObservationWrite
	// Series records carry the Version they were read at (0: new).
	Series []*SeriesRecord
	// Identity is set when the identity record changed, or when a record is
	// created: writing it fences the creation against membership changes.
	Identity *IdentityRecord
	// Applied lists the observations the commit applies to its records, in
	// order; stores ignore it (it is what the commit means, for counting).
	Applied []Observation
}

// Items counts the items the commit writes.
func (c *Commit) Items() int {
	n := len(c.Observations) + len(c.Series)
	if c.Identity != nil {
		n++
	}
	return n
}

// Bytes is an upper bound of the size of the items the commit writes: each
// observation with its events and each record as JSON (a store writes
// them as JSON or deflated JSON), plus commitItemOverhead per item.
func (c *Commit) Bytes() int {
	n := 0
	for _, w := range c.Observations {
		n += jsonBytes(w.Observation) + commitItemOverhead
	}
	for _, r := range c.Series {
		n += jsonBytes(r) + commitItemOverhead
	}
	if c.Identity != nil {
		n += jsonBytes(c.Identity) + commitItemOverhead
	}
	return n
}

// ObservationRef names an observation item: the attacker's stored series
// and the natural key within it.
type ObservationRef struct {
	Key SeriesKey
	Ref string
}

// StoredObservation is an observation item as stored.
type StoredObservation struct {
	Observation Observation
	// Revision counts the amendments of the observation (1: as first
	// stored; 0: stored before revisions were kept).
	Revision int
	// Events are those an item of the transactional design carries: the
	// events the observation caused, kept for a redelivery to publish.
	Events []Event
}

// ObservationWrite stores one observation of a series.
type ObservationWrite struct {
	Key         SeriesKey
	Observation Observation
	// Revision orders the versions of one observation: an item is only
	// replaced by a write of a later revision.
	Revision int
	// Replaces is empty for a new observation, which must not be stored
	// yet, or the fingerprint of the stored observation an amendment
	// replaces, which must still be the stored one.
	Replaces string
}

// ObservationExistsError reports that the observation at Index of a commit
// was not written because the stored one is not what the write expected.
type ObservationExistsError struct {
	Index  int
	Stored StoredObservation
}

func (e *ObservationExistsError) Error() string {
	return fmt.Sprintf("observation %d of the commit: stored observation %s of %s differs from the expected one",
		e.Index, e.Stored.Observation.EvidenceRef, e.Stored.Observation.Primitive)
}

// ObservationGoneError reports that the observation at Index of a commit
// amends a stored observation that is no longer stored (expired by its TTL,
// or deleted). Nothing is left to amend: the amendment is a new observation.
type ObservationGoneError struct {
	Index       int
	EvidenceRef string
}

func (e *ObservationGoneError) Error() string {
	return fmt.Sprintf("observation %d of the commit: amended observation %s is no longer stored", e.Index, e.EvidenceRef)
}

// MembershipCommit is one atomic membership change: the attacker and
// identity records it changes and every series record it recomputes or
// retires, each conditioned on the version it was read at.
type MembershipCommit struct {
	Attackers  []*AttackerRecord
	Identities []*IdentityRecord
	Series     []*SeriesRecord
}

// Items counts the items the commit writes.
func (c *MembershipCommit) Items() int {
	return len(c.Attackers) + len(c.Identities) + len(c.Series)
}
