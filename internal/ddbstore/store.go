package ddbstore

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/backoff"
	"decnet-attribution/internal/itemsize"
)

// Attribute names.
const (
	attrAttacker    = "attacker_uuid"
	attrIdentity    = "identity_uuid"
	attrCreatedAt   = "created_at"
	attrSeries      = "series"
	attrEvidenceRef = "evidence_ref"
	attrObservation = "obs"
	attrFingerprint = "fp"
	attrExpiresAt   = "expires_at"
	attrPrimitive   = "primitive"
	attrVersion     = "v"
	attrRecord      = "rec"
	attrPublished   = "pub"
	attrEvents      = "ev"
	attrRevision    = "rev"
)

// identityItem is the sort key of an identity's own record in the states
// table; primitive names cannot start with '#'.
const identityItem = "#identity"

// batchGetLimit is the most keys one BatchGetItem takes; past
// queryThreshold keys, one Query over the identity's range is cheaper,
// because a query rounds the summed size up once rather than every item.
const (
	batchGetLimit  = 100
	queryThreshold = 4
)

// Client is the part of the DynamoDB API the store uses.
type Client interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
	// Scan and DescribeTable serve the operators' whole-table reads.
	Scan(ctx context.Context, in *dynamodb.ScanInput, opts ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

var (
	_ Client                 = (*dynamodb.Client)(nil)
	_ attribution.Store      = (*Store)(nil)
	_ attribution.Identities = (*Store)(nil)
)

// Tables names the three tables.
type Tables struct {
	Identities   string
	Observations string
	States       string
}

// Store is the DynamoDB attribution.Store.
type Store struct {
	Client Client
	Tables Tables
	// ObservationTTL, when positive, sets expires_at on observations.
	ObservationTTL time.Duration
	// Now is the clock (for created_at and expires_at).
	Now func() time.Time
}

// New returns a store over client.
func New(client Client, tables Tables, ttl time.Duration) *Store {
	return &Store{Client: client, Tables: tables, ObservationTTL: ttl, Now: time.Now}
}

// Identity implements attribution.Identities.
func (s *Store) Identity(ctx context.Context, attacker, proposed string) (string, error) {
	key := map[string]types.AttributeValue{attrAttacker: str(attacker)}
	got, err := s.Client.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.Tables.Identities, Key: key})
	if err != nil {
		return "", fmt.Errorf("get identity of %s: %w", attacker, err)
	}
	if id := stringAttr(got.Item, attrIdentity); id != "" {
		return id, nil
	}
	_, err = s.Client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: &s.Tables.Identities,
		Item: map[string]types.AttributeValue{
			attrAttacker:  str(attacker),
			attrIdentity:  str(proposed),
			attrCreatedAt: integer(s.Now().Unix()),
		},
		ConditionExpression:                 aws.String("attribute_not_exists(#a)"),
		ExpressionAttributeNames:            map[string]string{"#a": attrAttacker},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case err == nil:
		return proposed, nil
	case errors.As(err, &ccf):
		// Another first sighting won; its identity is the one.
		if id := stringAttr(ccf.Item, attrIdentity); id != "" {
			return id, nil
		}
		got, err := s.Client.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.Tables.Identities, Key: key, ConsistentRead: aws.Bool(true)})
		if err != nil {
			return "", fmt.Errorf("read winning identity of %s: %w", attacker, err)
		}
		if id := stringAttr(got.Item, attrIdentity); id != "" {
			return id, nil
		}
		return "", fmt.Errorf("identity of %s: condition failed but no item found", attacker)
	default:
		return "", fmt.Errorf("create identity of %s: %w", attacker, err)
	}
}

// LoadSeries implements attribution.Store.
func (s *Store) LoadSeries(ctx context.Context, identity string, primitives []string, consistent bool) (map[string]*attribution.SeriesRecord, error) {
	want := make(map[string]bool, len(primitives))
	for _, p := range primitives {
		want[p] = true
	}
	var items []map[string]types.AttributeValue
	var err error
	if len(want) >= queryThreshold {
		items, err = s.queryRange(ctx, identity, want, consistent)
	} else {
		items, err = s.batchGet(ctx, identity, want, consistent)
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string]*attribution.SeriesRecord, len(want))
	for _, item := range items {
		prim := stringAttr(item, attrPrimitive)
		if !want[prim] {
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

// seriesRecord decodes a stored series record with its version and the
// acknowledged position of its outbox.
func seriesRecord(item map[string]types.AttributeValue, identity, prim string) (*attribution.SeriesRecord, error) {
	rec := &attribution.SeriesRecord{Key: attribution.SeriesKey{IdentityUUID: identity, Primitive: prim}}
	var err error
	if err = decodeRecord(item, rec); err == nil {
		if rec.Version, err = intAttr(item, attrVersion); err == nil {
			rec.Published, err = intAttr(item, attrPublished)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("series %s|%s: %w", identity, prim, err)
	}
	return rec, nil
}

func (s *Store) queryRange(ctx context.Context, identity string, want map[string]bool, consistent bool) ([]map[string]types.AttributeValue, error) {
	names := make([]string, 0, len(want))
	for p := range want {
		names = append(names, p)
	}
	sort.Strings(names)
	in := &dynamodb.QueryInput{
		TableName:                &s.Tables.States,
		KeyConditionExpression:   aws.String("#id = :id AND #p BETWEEN :lo AND :hi"),
		ExpressionAttributeNames: map[string]string{"#id": attrIdentity, "#p": attrPrimitive},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":id": str(identity), ":lo": str(names[0]), ":hi": str(names[len(names)-1]),
		},
		ConsistentRead: aws.Bool(consistent),
	}
	return s.queryAll(ctx, in)
}

func (s *Store) queryAll(ctx context.Context, in *dynamodb.QueryInput) ([]map[string]types.AttributeValue, error) {
	var items []map[string]types.AttributeValue
	for {
		out, err := s.Client.Query(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", aws.ToString(in.TableName), err)
		}
		items = append(items, out.Items...)
		if len(out.LastEvaluatedKey) == 0 {
			return items, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

func (s *Store) batchGet(ctx context.Context, identity string, want map[string]bool, consistent bool) ([]map[string]types.AttributeValue, error) {
	keys := make([]map[string]types.AttributeValue, 0, len(want))
	for p := range want {
		keys = append(keys, stateKey(identity, p))
	}
	return s.batchGetKeys(ctx, s.Tables.States, keys, consistent)
}

// batchGetKeys reads the items under keys, in requests of batchGetLimit,
// until DynamoDB has processed every key.
func (s *Store) batchGetKeys(ctx context.Context, table string, keys []map[string]types.AttributeValue, consistent bool) ([]map[string]types.AttributeValue, error) {
	var items []map[string]types.AttributeValue
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), batchGetLimit)]
		keys = keys[len(chunk):]
		request := map[string]types.KeysAndAttributes{table: {Keys: chunk, ConsistentRead: aws.Bool(consistent)}}
		for attempt := 0; len(request) > 0; attempt++ {
			if attempt > 0 {
				if err := backoff.Sleep(ctx, time.Duration(attempt)*20*time.Millisecond); err != nil {
					return nil, err
				}
			}
			if attempt > 8 {
				return nil, fmt.Errorf("batch get %s: keys still unprocessed after %d attempts", table, attempt)
			}
			out, err := s.Client.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: request})
			if err != nil {
				return nil, fmt.Errorf("batch get %s: %w", table, err)
			}
			items = append(items, out.Responses[table]...)
			request = out.UnprocessedKeys
		}
	}
	return items, nil
}

// LoadIdentity implements attribution.Store.
func (s *Store) LoadIdentity(ctx context.Context, identity string, consistent bool) (*attribution.IdentityRecord, error) {
	out, err := s.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      &s.Tables.States,
		Key:            stateKey(identity, identityItem),
		ConsistentRead: aws.Bool(consistent),
	})
	if err != nil {
		return nil, fmt.Errorf("get identity record %s: %w", identity, err)
	}
	rec := &attribution.IdentityRecord{IdentityUUID: identity}
	if out.Item == nil {
		return rec, nil
	}
	if err := decodeRecord(out.Item, rec); err != nil {
		return nil, fmt.Errorf("identity record %s: %w", identity, err)
	}
	rec.IdentityUUID = identity
	if rec.Version, err = intAttr(out.Item, attrVersion); err != nil {
		return nil, fmt.Errorf("identity record %s: %w", identity, err)
	}
	if rec.Published, err = intAttr(out.Item, attrPublished); err != nil {
		return nil, fmt.Errorf("identity record %s: %w", identity, err)
	}
	return rec, nil
}

// LoadObservations implements attribution.Store.
func (s *Store) LoadObservations(ctx context.Context, key attribution.SeriesKey) ([]attribution.Observation, error) {
	items, err := s.queryAll(ctx, &dynamodb.QueryInput{
		TableName:                 &s.Tables.Observations,
		KeyConditionExpression:    aws.String("#s = :s"),
		ExpressionAttributeNames:  map[string]string{"#s": attrSeries},
		ExpressionAttributeValues: map[string]types.AttributeValue{":s": str(key.String())},
		ConsistentRead:            aws.Bool(true),
	})
	if err != nil {
		return nil, err
	}
	out := make([]attribution.Observation, 0, len(items))
	for _, item := range items {
		o, err := decodeObservation(item)
		if err != nil {
			return nil, fmt.Errorf("series %s: %w", key, err)
		}
		out = append(out, o)
	}
	return out, nil
}

// Commit implements attribution.Store: one conditional UpdateItem for a
// commit of one record alone (a transaction would charge it twice), else
// one TransactWriteItems.
func (s *Store) Commit(ctx context.Context, c *attribution.Commit) error {
	if len(c.Observations) == 0 && len(c.Series) == 1 && c.Identity == nil {
		return s.commitRecord(ctx, c.Series[0])
	}
	actions := make([]types.TransactWriteItem, 0, c.Items())
	for _, w := range c.Observations {
		put, err := s.observationPut(w)
		if err != nil {
			return err
		}
		actions = append(actions, types.TransactWriteItem{Put: put})
	}
	for _, r := range c.Series {
		u, err := s.recordUpdate(stateKey(r.Key.IdentityUUID, r.Key.Primitive), r, r.Version, r.Published)
		if err != nil {
			return fmt.Errorf("series %s: %w", r.Key, err)
		}
		actions = append(actions, types.TransactWriteItem{Update: u})
	}
	if c.Identity != nil {
		u, err := s.recordUpdate(stateKey(c.Identity.IdentityUUID, identityItem), c.Identity, c.Identity.Version, c.Identity.Published)
		if err != nil {
			return fmt.Errorf("identity %s: %w", c.Identity.IdentityUUID, err)
		}
		actions = append(actions, types.TransactWriteItem{Update: u})
	}
	// DynamoDB refuses a transaction over 4 MB (moto does not); the
	// processor plans commits within attribution.MaxCommitBytes, above it.
	if n := transactionBytes(actions); n > maxTransactionBytes {
		return fmt.Errorf("commit %d items: %d bytes, over DynamoDB's %d-byte transaction limit", c.Items(), n, maxTransactionBytes)
	}
	_, err := s.Client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: actions})
	if err == nil {
		return nil
	}
	return s.commitError(ctx, c, err)
}

// commitRecord writes one series record on its own.
func (s *Store) commitRecord(ctx context.Context, r *attribution.SeriesRecord) error {
	u, err := s.recordUpdate(stateKey(r.Key.IdentityUUID, r.Key.Primitive), r, r.Version, r.Published)
	if err != nil {
		return fmt.Errorf("series %s: %w", r.Key, err)
	}
	_, err = s.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 u.TableName,
		Key:                       u.Key,
		UpdateExpression:          u.UpdateExpression,
		ConditionExpression:       u.ConditionExpression,
		ExpressionAttributeNames:  u.ExpressionAttributeNames,
		ExpressionAttributeValues: u.ExpressionAttributeValues,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ccf):
		return fmt.Errorf("series %s: %w", r.Key, attribution.ErrVersionConflict)
	default:
		return fmt.Errorf("commit series %s: %w", r.Key, err)
	}
}

// maxTransactionBytes is DynamoDB's limit on the aggregate size of the
// items of one TransactWriteItems.
const maxTransactionBytes = 4 << 20

// transactionBytes is the aggregate size of the items the actions write,
// by DynamoDB's item size rules: a put's item; for an update, the key and
// every value it sets, under their attribute names.
func transactionBytes(actions []types.TransactWriteItem) int {
	n := 0
	for _, a := range actions {
		switch {
		case a.Put != nil:
			n += itemsize.Item(a.Put.Item)
		case a.Update != nil:
			n += itemsize.Item(a.Update.Key)
			for _, name := range a.Update.ExpressionAttributeNames {
				n += len(name)
			}
			for _, v := range a.Update.ExpressionAttributeValues {
				n += itemsize.Value(v)
			}
		}
	}
	return n
}

// commitError translates a cancelled transaction into the store's error
// contract; this is the one place that reads cancellation reasons.
func (s *Store) commitError(ctx context.Context, c *attribution.Commit, err error) error {
	var cancelled *types.TransactionCanceledException
	if !errors.As(err, &cancelled) {
		return fmt.Errorf("commit %d items: %w", c.Items(), err)
	}
	conflict := false
	for i, reason := range cancelled.CancellationReasons {
		code := aws.ToString(reason.Code)
		switch {
		case code == "" || code == "None":
			continue
		case code == "ConditionalCheckFailed" && i < len(c.Observations):
			existing, err := s.existingObservation(ctx, i, c.Observations[i], reason.Item)
			if errors.Is(err, errNotStored) {
				// An amendment's target expired or was deleted.
				return &attribution.ObservationGoneError{Index: i, EvidenceRef: c.Observations[i].Observation.EvidenceRef}
			}
			if err != nil {
				return err
			}
			return existing
		case code == "ConditionalCheckFailed" || code == "TransactionConflict":
			conflict = true
		default:
			return fmt.Errorf("commit %d items: item %d: %s: %w", c.Items(), i, code, err)
		}
	}
	if conflict {
		return fmt.Errorf("commit %d items: %w", c.Items(), attribution.ErrVersionConflict)
	}
	return fmt.Errorf("commit %d items: %w", c.Items(), err)
}

// errNotStored is existingObservation's answer when no observation is
// stored under the failed put's key.
var errNotStored = errors.New("observation not stored")

// existingObservation is the stored observation the failed put at index ran
// into, with its events: from the cancellation reason when DynamoDB
// returned it, else read; errNotStored when there is none.
func (s *Store) existingObservation(ctx context.Context, index int, w attribution.ObservationWrite, item map[string]types.AttributeValue) (*attribution.ObservationExistsError, error) {
	if len(item) == 0 {
		out, err := s.Client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName:      &s.Tables.Observations,
			Key:            observationKey(w.Key, w.Observation.EvidenceRef),
			ConsistentRead: aws.Bool(true),
		})
		if err != nil {
			return nil, fmt.Errorf("read stored observation %s: %w", w.Observation.EvidenceRef, err)
		}
		if len(out.Item) == 0 {
			return nil, errNotStored
		}
		item = out.Item
	}
	o, err := decodeStored(item)
	if err != nil {
		return nil, err
	}
	return &attribution.ObservationExistsError{Index: index, Stored: o}, nil
}

// observationItem is the item of an observation write.
func (s *Store) observationItem(w attribution.ObservationWrite) (map[string]types.AttributeValue, error) {
	body, err := json.Marshal(w.Observation)
	if err != nil {
		return nil, fmt.Errorf("encode observation %s: %w", w.Observation.EvidenceRef, err)
	}
	item := observationKey(w.Key, w.Observation.EvidenceRef)
	item[attrObservation] = str(string(body))
	item[attrFingerprint] = str(w.Observation.Fingerprint())
	item[attrRevision] = integer(int64(w.Revision))
	if s.ObservationTTL > 0 {
		item[attrExpiresAt] = integer(s.Now().Add(s.ObservationTTL).Unix())
	}
	return item, nil
}

func (s *Store) observationPut(w attribution.ObservationWrite) (*types.Put, error) {
	item, err := s.observationItem(w)
	if err != nil {
		return nil, err
	}
	put := &types.Put{
		TableName:                           &s.Tables.Observations,
		Item:                                item,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	if w.Replaces == "" {
		put.ConditionExpression = aws.String("attribute_not_exists(#r)")
		put.ExpressionAttributeNames = map[string]string{"#r": attrEvidenceRef}
	} else {
		put.ConditionExpression = aws.String("#fp = :fp")
		put.ExpressionAttributeNames = map[string]string{"#fp": attrFingerprint}
		put.ExpressionAttributeValues = map[string]types.AttributeValue{":fp": str(w.Replaces)}
	}
	return put, nil
}

// recordUpdate writes a record at version+1 if it is still at version,
// with the acknowledged position of its outbox when it knows one (a
// processor acknowledges with the record's next write, for free).
func (s *Store) recordUpdate(key map[string]types.AttributeValue, record any, version, published int64) (*types.Update, error) {
	blob, err := deflateJSON(record)
	if err != nil {
		return nil, err
	}
	u := &types.Update{
		TableName:                &s.Tables.States,
		Key:                      key,
		UpdateExpression:         aws.String("SET #rec = :rec, #v = :next"),
		ExpressionAttributeNames: map[string]string{"#rec": attrRecord, "#v": attrVersion},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":rec":  &types.AttributeValueMemberB{Value: blob},
			":next": integer(version + 1),
		},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureNone,
	}
	if published > 0 {
		u.UpdateExpression = aws.String("SET #rec = :rec, #v = :next, #pub = :pub")
		u.ExpressionAttributeNames["#pub"] = attrPublished
		u.ExpressionAttributeValues[":pub"] = integer(published)
	}
	if version == 0 {
		u.ConditionExpression = aws.String("attribute_not_exists(#v)")
	} else {
		u.ConditionExpression = aws.String("#v = :read")
		u.ExpressionAttributeValues[":read"] = integer(version)
	}
	return u, nil
}

// Ack implements attribution.Store.
func (s *Store) Ack(ctx context.Context, key attribution.SeriesKey, position int64) error {
	_, err := s.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                &s.Tables.States,
		Key:                      stateKey(key.IdentityUUID, key.Primitive),
		UpdateExpression:         aws.String("SET #pub = :p"),
		ConditionExpression:      aws.String("attribute_exists(#v) AND (attribute_not_exists(#pub) OR #pub < :p)"),
		ExpressionAttributeNames: map[string]string{"#pub": attrPublished, "#v": attrVersion},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":p": integer(position),
		},
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return nil // already acknowledged as far or further
	}
	if err != nil {
		return fmt.Errorf("ack %s up to %d: %w", key, position, err)
	}
	return nil
}

func stateKey(identity, primitive string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrIdentity: str(identity), attrPrimitive: str(primitive)}
}

func observationKey(key attribution.SeriesKey, ref string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrSeries: str(key.String()), attrEvidenceRef: str(ref)}
}

// decodeStored decodes an observation item with its revision and, on an
// item of the transactional design, the events it carries.
func decodeStored(item map[string]types.AttributeValue) (attribution.StoredObservation, error) {
	o, err := decodeObservation(item)
	if err != nil {
		return attribution.StoredObservation{}, err
	}
	stored := attribution.StoredObservation{Observation: o}
	rev, err := intAttr(item, attrRevision)
	if err != nil {
		return stored, fmt.Errorf("stored observation %s: %w", o.EvidenceRef, err)
	}
	stored.Revision = int(rev)
	if b, ok := item[attrEvents].(*types.AttributeValueMemberB); ok {
		if err := inflateJSON(b.Value, &stored.Events); err != nil {
			return stored, fmt.Errorf("events of stored observation %s: %w", o.EvidenceRef, err)
		}
	}
	return stored, nil
}

func decodeObservation(item map[string]types.AttributeValue) (attribution.Observation, error) {
	var o attribution.Observation
	body := stringAttr(item, attrObservation)
	if err := json.Unmarshal([]byte(body), &o); err != nil {
		return o, fmt.Errorf("decode stored observation %s: %w", stringAttr(item, attrEvidenceRef), err)
	}
	return o, nil
}

// deflateJSON deflates a value's JSON: a record's kept tail repeats
// evidence refs and values, and events repeat identities and keys, so they
// shrink to a fraction and items stay within one write unit.
func deflateJSON(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	var buf bytes.Buffer
	w := deflaters.Get().(*flate.Writer)
	defer deflaters.Put(w)
	w.Reset(&buf)
	if _, err := w.Write(raw); err != nil {
		return nil, fmt.Errorf("deflate: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("deflate: %w", err)
	}
	return buf.Bytes(), nil
}

// deflaters reuses compressors: a new one allocates ~800 KB of tables,
// which dominated the handler's CPU time.
var deflaters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(io.Discard, flate.BestCompression)
	return w
}}

func decodeRecord(item map[string]types.AttributeValue, record any) error {
	b, ok := item[attrRecord].(*types.AttributeValueMemberB)
	if !ok {
		return fmt.Errorf("item has no %s attribute", attrRecord)
	}
	return inflateJSON(b.Value, record)
}

func inflateJSON(blob []byte, v any) error {
	raw, err := io.ReadAll(flate.NewReader(bytes.NewReader(blob)))
	if err != nil {
		return fmt.Errorf("inflate: %w", err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

// integer writes n exactly: through float64, integers above 2^53 would
// lose digits.
func integer(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func stringAttr(item map[string]types.AttributeValue, name string) string {
	if v, ok := item[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

// intAttr reads an integer attribute; an absent one is 0. Anything else
// there is an error: a version read as 0 would overwrite the record.
func intAttr(item map[string]types.AttributeValue, name string) (int64, error) {
	raw, present := item[name]
	if !present {
		return 0, nil
	}
	v, ok := raw.(*types.AttributeValueMemberN)
	if !ok {
		return 0, fmt.Errorf("attribute %s: want a number, got %T", name, raw)
	}
	n, err := strconv.ParseInt(v.Value, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("attribute %s: want an integer, got %q", name, v.Value)
	}
	return n, nil
}
