package operator

import (
	"context"
	"fmt"

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
	states, err := r.Identity(ctx, id.Value)
	if err != nil {
		return nil, err
	}
	states.AttackerUUID = attackerUUID
	return states, nil
}

// Identity returns the states of an identity. An identity with no state
// in the table is an error with code attribution.ENOTFOUND.
func (r *StateReader) Identity(ctx context.Context, identityUUID string) (*IdentityStates, error) {
	primitives, err := listPrimitives(ctx, r.Client, r.Tables.States, identityUUID)
	if err != nil {
		return nil, err
	}
	if len(primitives) == 0 {
		return nil, &attribution.Error{Code: attribution.ENOTFOUND,
			Message: fmt.Sprintf("identity %s has no states in table %s", identityUUID, r.Tables.States)}
	}
	store := ddbstore.New(r.Client, r.Tables, 0)
	records, err := store.LoadSeries(ctx, identityUUID, primitives, false)
	if err != nil {
		return nil, fmt.Errorf("read states of identity %s: %w", identityUUID, missing(err, "table", r.Tables.States))
	}
	ident, err := store.LoadIdentity(ctx, identityUUID, false)
	if err != nil {
		return nil, fmt.Errorf("read identity record %s: %w", identityUUID, missing(err, "table", r.Tables.States))
	}
	res := &IdentityStates{IdentityUUID: identityUUID, Flagged: ident.Flagged, Suspicions: ident.Suspicions}
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
	return res, nil
}
