package ddbstore

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"decnet-attribution/internal/attribution"
)

// putConcurrency bounds the item writes of one PutObservations in flight.
const putConcurrency = 16

// LookupObservations implements attribution.Store with strongly consistent
// BatchGetItem requests: an item written just before must be seen.
func (s *Store) LookupObservations(ctx context.Context, refs []attribution.ObservationRef) (map[attribution.ObservationRef]attribution.StoredObservation, error) {
	keys := make([]map[string]types.AttributeValue, 0, len(refs))
	byItem := make(map[[2]string]attribution.ObservationRef, len(refs))
	for _, r := range refs {
		id := [2]string{r.Key.String(), r.Ref}
		if _, dup := byItem[id]; !dup {
			byItem[id] = r
			keys = append(keys, observationKey(r.Key, r.Ref))
		}
	}
	items, err := s.batchGetKeys(ctx, s.Tables.Observations, keys, true)
	if err != nil {
		return nil, err
	}
	out := make(map[attribution.ObservationRef]attribution.StoredObservation, len(items))
	for _, item := range items {
		stored, err := decodeStored(item)
		if err != nil {
			return nil, err
		}
		out[byItem[[2]string{stringAttr(item, attrSeries), stringAttr(item, attrEvidenceRef)}]] = stored
	}
	return out, nil
}

// PutObservations implements attribution.Store: one conditional PutItem per
// item, in parallel. The condition lets a write replace only an item of an
// earlier revision (or of none: items stored before revisions were kept),
// or one with its own content; a write it refuses was superseded.
func (s *Store) PutObservations(ctx context.Context, writes []attribution.ObservationWrite) error {
	errs := make([]error, len(writes))
	limit := make(chan struct{}, putConcurrency)
	var wg sync.WaitGroup
	for i, w := range writes {
		limit <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-limit; wg.Done() }()
			errs[i] = s.putObservation(ctx, w)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Store) putObservation(ctx context.Context, w attribution.ObservationWrite) error {
	item, err := s.observationItem(w)
	if err != nil {
		return err
	}
	_, err = s.Client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:           &s.Tables.Observations,
		Item:                item,
		ConditionExpression: aws.String("attribute_not_exists(#r) OR attribute_not_exists(#rev) OR #rev < :rev OR #fp = :fp"),
		ExpressionAttributeNames: map[string]string{
			"#r": attrEvidenceRef, "#rev": attrRevision, "#fp": attrFingerprint,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":rev": integer(int64(w.Revision)), ":fp": str(w.Observation.Fingerprint()),
		},
	})
	var ccf *types.ConditionalCheckFailedException
	if err != nil && !errors.As(err, &ccf) {
		return fmt.Errorf("write observation %s of %s: %w", w.Observation.EvidenceRef, w.Key, err)
	}
	return nil
}
