package ddbstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ListPrimitives lists the primitives an identity has series records of,
// sorted, with a consistent keys-only query of its range of the states
// table (its own identity record left out).
func (s *Store) ListPrimitives(ctx context.Context, identity string) ([]string, error) {
	items, err := s.queryAll(ctx, &dynamodb.QueryInput{
		TableName:                 &s.Tables.States,
		KeyConditionExpression:    aws.String("#id = :id"),
		ProjectionExpression:      aws.String("#p"),
		ExpressionAttributeNames:  map[string]string{"#id": attrIdentity, "#p": attrPrimitive},
		ExpressionAttributeValues: map[string]types.AttributeValue{":id": str(identity)},
		ConsistentRead:            aws.Bool(true),
	})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(items))
	for _, item := range items {
		if p := stringAttr(item, attrPrimitive); p != "" && p != identityItem {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out, nil
}

// ObservationItems is DynamoDB's count of the observation items, which it
// refreshes about every six hours: an estimate, for progress. It is 0 when
// unknown, with the error.
func (s *Store) ObservationItems(ctx context.Context) (int64, error) {
	out, err := s.Client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &s.Tables.Observations})
	if err != nil {
		return 0, fmt.Errorf("describe %s: %w", s.Tables.Observations, err)
	}
	if out.Table == nil {
		return 0, nil
	}
	return aws.ToInt64(out.Table.ItemCount), nil
}
