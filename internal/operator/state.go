package operator

import (
	"context"
	"fmt"
	"slices"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
)

// StateStore is what a StateReader reads: attackers' identities, identity
// records, and an identity's series records and their list.
// *ddbstore.Store satisfies it.
type StateStore interface {
	LoadAttacker(ctx context.Context, attacker string) (*attribution.AttackerRecord, error)
	LoadIdentity(ctx context.Context, identity string, consistent bool) (*attribution.IdentityRecord, error)
	LoadSeries(ctx context.Context, identity string, primitives []string, consistent bool) (map[string]*attribution.SeriesRecord, error)
	ListPrimitives(ctx context.Context, identity string) ([]string, error)
}

var _ StateStore = (*ddbstore.Store)(nil)

// StateReader reads what the states table holds about one identity.
type StateReader struct {
	Store StateStore
	// IdentitiesTable and StatesTable name the tables in messages.
	IdentitiesTable string
	StatesTable     string
}

// IdentityStates is one identity's states.
type IdentityStates struct {
	IdentityUUID string
	// AttackerUUID is the attacker asked about, or the one of the most
	// recently observed series.
	AttackerUUID string
	// States are sorted by primitive.
	States []SeriesState
	// Flagged are the primitives the identity record holds in multi_actor,
	// sorted; Suspicions counts the multi_actor_suspected events raised.
	Flagged    []string
	Suspicions int64
	// Chain is the identity asked about (an attacker's literal identity)
	// and the identities it is merged into, up to IdentityUUID, the
	// canonical one whose states these are.
	Chain []Link
	// Attackers are those resolving to the canonical identity, sorted.
	Attackers []string
}

// Link is one identity of a merge chain: merged into the next one by the
// identity event stamped Stamp (zero for the canonical identity).
type Link struct {
	IdentityUUID string
	Stamp        attribution.Stamp
}

// SeriesState is the state of one (identity, primitive) series.
type SeriesState struct {
	Primitive    string
	AttackerUUID string
	attribution.State
	// LastChangeTS is when the state word last changed: its "stable since".
	LastChangeTS float64
	// Transitions counts the series' state_changed events.
	Transitions int64
	// Pending counts the events a rebuild queued that the bus has not yet
	// acknowledged (events of observations are stored with them instead).
	Pending int
}

// Attacker returns the states of the identity of an attacker. An attacker
// the identities table does not know is an error with code
// attribution.ENOTFOUND.
func (r *StateReader) Attacker(ctx context.Context, attackerUUID string) (*IdentityStates, error) {
	rec, err := r.Store.LoadAttacker(ctx, attackerUUID)
	if err != nil {
		return nil, fmt.Errorf("look up attacker %s: %w", attackerUUID, missing(err, "table", r.IdentitiesTable))
	}
	if rec.IdentityUUID == "" {
		return nil, &attribution.Error{Code: attribution.ENOTFOUND,
			Message: fmt.Sprintf("attacker %s is not in table %s (no observation of it was processed)", attackerUUID, r.IdentitiesTable)}
	}
	states, err := r.identity(ctx, rec.IdentityUUID, attackerUUID)
	if err != nil {
		return nil, err
	}
	states.AttackerUUID = attackerUUID
	return states, nil
}

// Identity returns the states of an identity: of the canonical identity it
// is merged into, if it is. An identity with neither states nor a record
// in the table is an error with code attribution.ENOTFOUND.
func (r *StateReader) Identity(ctx context.Context, identityUUID string) (*IdentityStates, error) {
	return r.identity(ctx, identityUUID, "")
}

// identity reads the chain from identityUUID to its canonical identity and
// the canonical identity's states; attacker, when known, is one whose
// literal identity identityUUID is (a provisional stub lists no members).
func (r *StateReader) identity(ctx context.Context, identityUUID, attacker string) (*IdentityStates, error) {
	var chain []Link
	var ident *attribution.IdentityRecord
	for id := identityUUID; ; {
		if len(chain) > attribution.MaxMergeChain {
			return nil, fmt.Errorf("identity %s: more than %d merges in its chain", identityUUID, attribution.MaxMergeChain)
		}
		var err error
		if ident, err = r.Store.LoadIdentity(ctx, id, false); err != nil {
			return nil, fmt.Errorf("read identity record %s: %w", id, missing(err, "table", r.StatesTable))
		}
		chain = append(chain, Link{IdentityUUID: id, Stamp: ident.ParentStamp})
		if ident.Parent == "" {
			chain[len(chain)-1].Stamp = attribution.Stamp{}
			break
		}
		id = ident.Parent
	}
	canonical := chain[len(chain)-1].IdentityUUID
	primitives, err := r.Store.ListPrimitives(ctx, canonical)
	if err != nil {
		return nil, fmt.Errorf("list states of identity %s: %w", canonical, missing(err, "table", r.StatesTable))
	}
	if len(primitives) == 0 && ident.Version == 0 {
		return nil, &attribution.Error{Code: attribution.ENOTFOUND,
			Message: fmt.Sprintf("identity %s has no states in table %s", identityUUID, r.StatesTable)}
	}
	records, err := r.Store.LoadSeries(ctx, canonical, primitives, false)
	if err != nil {
		return nil, fmt.Errorf("read states of identity %s: %w", canonical, missing(err, "table", r.StatesTable))
	}
	res := &IdentityStates{IdentityUUID: canonical, Flagged: ident.Flagged, Suspicions: ident.Suspicions, Chain: chain}
	latest := -1.0
	for _, p := range primitives {
		rec := records[p]
		if rec == nil || rec.Orphaned(ident.Membership) {
			continue // deleted between the two reads, or holding nothing applied
		}
		s := SeriesState{
			Primitive:    p,
			AttackerUUID: rec.AttackerUUID,
			State:        attribution.State{State: attribution.StateUnknown, CurrentValue: attribution.Null},
			LastChangeTS: rec.LastChangeTS,
			Transitions:  rec.Transitions,
			Pending:      len(rec.Pending()),
		}
		if rec.Current != nil {
			s.State = *rec.Current
		}
		if s.LastObservationTS > latest {
			latest, res.AttackerUUID = s.LastObservationTS, s.AttackerUUID
		}
		res.States = append(res.States, s)
	}
	if attacker == "" {
		attacker = res.AttackerUUID
	}
	res.Attackers = slices.Clone(ident.EffectiveMembers(canonical, attacker))
	return res, nil
}
