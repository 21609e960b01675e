package ddbstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"decnet-attribution/internal/attribution"
)

// Attributes of an attacker's item set by identity events: the stamp of
// the event that set its identity, the identities that change wrote, and a
// version compared on every change. Items written before the list kept the
// one identity the attacker left, as prev.
const (
	attrStampTS   = "stamp_ts"
	attrStampID   = "stamp_id"
	attrUnflushed = "unflushed"
	attrPrevious  = "prev"
)

// LoadAttacker implements attribution.Identities.
func (s *Store) LoadAttacker(ctx context.Context, attacker string) (*attribution.AttackerRecord, error) {
	out, err := s.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      &s.Tables.Identities,
		Key:            map[string]types.AttributeValue{attrAttacker: str(attacker)},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, fmt.Errorf("get attacker %s: %w", attacker, err)
	}
	rec := &attribution.AttackerRecord{AttackerUUID: attacker}
	if out.Item == nil {
		return rec, nil
	}
	rec.IdentityUUID = stringAttr(out.Item, attrIdentity)
	rec.Stamp.ID = stringAttr(out.Item, attrStampID)
	if set, ok := out.Item[attrUnflushed].(*types.AttributeValueMemberSS); ok {
		rec.Unflushed = slices.Sorted(slices.Values(set.Value))
	} else if prev := stringAttr(out.Item, attrPrevious); prev != "" {
		rec.Unflushed = []string{prev}
	}
	if v, ok := out.Item[attrStampTS].(*types.AttributeValueMemberN); ok {
		if rec.Stamp.TS, err = strconv.ParseFloat(v.Value, 64); err != nil {
			return nil, fmt.Errorf("attacker %s: stamp %q: %w", attacker, v.Value, err)
		}
	}
	if rec.Version, err = intAttr(out.Item, attrVersion); err != nil {
		return nil, fmt.Errorf("attacker %s: %w", attacker, err)
	}
	return rec, nil
}

// LoadIdentitySeries implements attribution.Store: one query over the
// identity's range of the states table.
func (s *Store) LoadIdentitySeries(ctx context.Context, identity string) (map[string]*attribution.SeriesRecord, error) {
	items, err := s.queryAll(ctx, &dynamodb.QueryInput{
		TableName:                 &s.Tables.States,
		KeyConditionExpression:    aws.String("#id = :id"),
		ExpressionAttributeNames:  map[string]string{"#id": attrIdentity},
		ExpressionAttributeValues: map[string]types.AttributeValue{":id": str(identity)},
		ConsistentRead:            aws.Bool(true),
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]*attribution.SeriesRecord, len(items))
	for _, item := range items {
		prim := stringAttr(item, attrPrimitive)
		if prim == identityItem {
			continue
		}
		rec, err := seriesRecord(item, identity, prim)
		if err != nil {
			return nil, err
		}
		out[prim] = rec
	}
	return out, nil
}

// CommitMembership implements attribution.Store with one TransactWriteItems.
func (s *Store) CommitMembership(ctx context.Context, c *attribution.MembershipCommit) error {
	actions := make([]types.TransactWriteItem, 0, c.Items())
	for _, a := range c.Attackers {
		actions = append(actions, types.TransactWriteItem{Update: s.attackerUpdate(a)})
	}
	for _, r := range c.Identities {
		u, err := s.recordUpdate(stateKey(r.IdentityUUID, identityItem), r, r.Version, r.Published)
		if err != nil {
			return fmt.Errorf("identity %s: %w", r.IdentityUUID, err)
		}
		actions = append(actions, types.TransactWriteItem{Update: u})
	}
	for _, r := range c.Series {
		u, err := s.recordUpdate(stateKey(r.Key.IdentityUUID, r.Key.Primitive), r, r.Version, r.Published)
		if err != nil {
			return fmt.Errorf("series %s: %w", r.Key, err)
		}
		actions = append(actions, types.TransactWriteItem{Update: u})
	}
	if len(actions) == 0 {
		return nil
	}
	if n := transactionBytes(actions); n > maxTransactionBytes {
		return fmt.Errorf("membership change of %d items: %d bytes, over DynamoDB's %d-byte transaction limit", c.Items(), n, maxTransactionBytes)
	}
	_, err := s.Client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: actions})
	var cancelled *types.TransactionCanceledException
	switch {
	case err == nil:
		return nil
	case errors.As(err, &cancelled):
		for i, reason := range cancelled.CancellationReasons {
			switch code := aws.ToString(reason.Code); code {
			case "", "None", "ConditionalCheckFailed", "TransactionConflict":
			default:
				return fmt.Errorf("membership change of %d items: item %d: %s: %w", c.Items(), i, code, err)
			}
		}
		return fmt.Errorf("membership change of %d items: %w", c.Items(), attribution.ErrVersionConflict)
	default:
		return fmt.Errorf("membership change of %d items: %w", c.Items(), err)
	}
}

// attackerUpdate sets an attacker's identity and stamp if its version is
// still the one read; a first sighting's item (no version yet) counts as
// version 0, as does no item at all.
func (s *Store) attackerUpdate(a *attribution.AttackerRecord) *types.Update {
	u := &types.Update{
		TableName:        &s.Tables.Identities,
		Key:              map[string]types.AttributeValue{attrAttacker: str(a.AttackerUUID)},
		UpdateExpression: aws.String("SET #id = :id, #sts = :sts, #sid = :sid, #v = :next, #c = if_not_exists(#c, :now)"),
		ExpressionAttributeNames: map[string]string{
			"#id": attrIdentity, "#sts": attrStampTS, "#sid": attrStampID, "#v": attrVersion, "#c": attrCreatedAt,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":id": str(a.IdentityUUID), ":sts": &types.AttributeValueMemberN{Value: strconv.FormatFloat(a.Stamp.TS, 'g', -1, 64)}, ":sid": str(a.Stamp.ID),
			":next": integer(a.Version + 1), ":now": integer(s.Now().Unix()),
		},
	}
	u.ExpressionAttributeNames["#unf"], u.ExpressionAttributeNames["#prev"] = attrUnflushed, attrPrevious
	if len(a.Unflushed) > 0 {
		u.UpdateExpression = aws.String(*u.UpdateExpression + ", #unf = :unf REMOVE #prev")
		u.ExpressionAttributeValues[":unf"] = &types.AttributeValueMemberSS{Value: a.Unflushed}
	} else {
		u.UpdateExpression = aws.String(*u.UpdateExpression + " REMOVE #unf, #prev")
	}
	if a.Version == 0 {
		u.ConditionExpression = aws.String("attribute_not_exists(#v)")
	} else {
		u.ConditionExpression = aws.String("#v = :read")
		u.ExpressionAttributeValues[":read"] = integer(a.Version)
	}
	return u
}
