package operator

import (
	"context"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
)

// Key attributes of the identities and states tables (the tables'
// contract, see template.yaml).
const (
	attrAttacker  = "attacker_uuid"
	attrIdentity  = "identity_uuid"
	attrPrimitive = "primitive"
	attrSeries    = "series"
	// attrObservation holds an observation item's body (its JSON).
	attrObservation = "obs"
	// identityItem is the sort key of an identity's own record.
	identityItem = "#identity"
)

// StateReader reads what the states table holds about one identity.
type StateReader struct {
	Client ddbstore.Client
	Tables ddbstore.Tables
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
	out, err := r.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(r.Tables.Identities),
		Key:       map[string]ddbtypes.AttributeValue{attrAttacker: &ddbtypes.AttributeValueMemberS{Value: attackerUUID}},
	})
	if err != nil {
		return nil, fmt.Errorf("look up attacker %s: %w", attackerUUID, missing(err, "table", r.Tables.Identities))
	}
	id, _ := out.Item[attrIdentity].(*ddbtypes.AttributeValueMemberS)
	if id == nil || id.Value == "" {
		return nil, &attribution.Error{Code: attribution.ENOTFOUND,
			Message: fmt.Sprintf("attacker %s is not in table %s (no observation of it was processed)", attackerUUID, r.Tables.Identities)}
	}
	states, err := r.identity(ctx, id.Value, attackerUUID)
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
	store := ddbstore.New(r.Client, r.Tables, 0)
	var chain []Link
	var ident *attribution.IdentityRecord
	for id := identityUUID; ; {
		if len(chain) > attribution.MaxMergeChain {
			return nil, fmt.Errorf("identity %s: more than %d merges in its chain", identityUUID, attribution.MaxMergeChain)
		}
		var err error
		if ident, err = store.LoadIdentity(ctx, id, false); err != nil {
			return nil, fmt.Errorf("read identity record %s: %w", id, missing(err, "table", r.Tables.States))
		}
		chain = append(chain, Link{IdentityUUID: id, Stamp: ident.ParentStamp})
		if ident.Parent == "" {
			chain[len(chain)-1].Stamp = attribution.Stamp{}
			break
		}
		id = ident.Parent
	}
	canonical := chain[len(chain)-1].IdentityUUID
	primitives, err := listPrimitives(ctx, r.Client, r.Tables.States, canonical)
	if err != nil {
		return nil, err
	}
	if len(primitives) == 0 && ident.Version == 0 {
		return nil, &attribution.Error{Code: attribution.ENOTFOUND,
			Message: fmt.Sprintf("identity %s has no states in table %s", identityUUID, r.Tables.States)}
	}
	records, err := store.LoadSeries(ctx, canonical, primitives, false)
	if err != nil {
		return nil, fmt.Errorf("read states of identity %s: %w", canonical, missing(err, "table", r.Tables.States))
	}
	res := &IdentityStates{IdentityUUID: canonical, Flagged: ident.Flagged, Suspicions: ident.Suspicions, Chain: chain}
	latest := -1.0
	for _, p := range primitives {
		rec := records[p]
		if rec == nil {
			continue // deleted between the two reads
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
