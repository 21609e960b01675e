package capacity

import (
	"context"
	"encoding/base64"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"decnet-attribution/internal/itemsize"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// sideReadTimeout bounds each side read. Side reads ignore the caller's
// cancellation so that a request that finished just before its deadline is
// still sized.
const sideReadTimeout = 30 * time.Second

type sideReadKey struct{}

// sideContext marks ctx so that a meter seeing it lets the call through
// uncounted, which keeps side reads out of the counts even if the side
// client is, by mistake, metered too.
func sideContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx = context.WithValue(context.WithoutCancel(ctx), sideReadKey{}, true)
	return context.WithTimeout(ctx, sideReadTimeout)
}

func isSideRead(ctx context.Context) bool {
	v, _ := ctx.Value(sideReadKey{}).(bool)
	return v
}

// keySchema names a table's key attributes.
type keySchema struct {
	hash, rng string
}

// schema returns the key schema of table, asking DescribeTable once per
// table name.
func (m *Meter) schema(ctx context.Context, table string) (keySchema, error) {
	m.schemaMu.Lock()
	ks, ok := m.schemas[table]
	m.schemaMu.Unlock()
	if ok {
		return ks, nil
	}
	sctx, cancel := sideContext(ctx)
	defer cancel()
	out, err := m.side.DescribeTable(sctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		return keySchema{}, fmt.Errorf("describe table %s: %w", table, err)
	}
	if out.Table == nil {
		return keySchema{}, fmt.Errorf("describe table %s: no table description", table)
	}
	for _, k := range out.Table.KeySchema {
		switch k.KeyType {
		case types.KeyTypeHash:
			ks.hash = aws.ToString(k.AttributeName)
		case types.KeyTypeRange:
			ks.rng = aws.ToString(k.AttributeName)
		}
	}
	if ks.hash == "" {
		return keySchema{}, fmt.Errorf("describe table %s: no partition key in key schema", table)
	}
	m.schemaMu.Lock()
	m.schemas[table] = ks
	m.schemaMu.Unlock()
	return ks, nil
}

// keyOf returns the primary key of a full item of table.
func (m *Meter) keyOf(ctx context.Context, table string, item map[string]types.AttributeValue) (map[string]types.AttributeValue, error) {
	ks, err := m.schema(ctx, table)
	if err != nil {
		return nil, err
	}
	key := make(map[string]types.AttributeValue, 2)
	for _, name := range []string{ks.hash, ks.rng} {
		if name == "" {
			continue
		}
		v, ok := item[name]
		if !ok {
			return nil, fmt.Errorf("item for table %s lacks key attribute %s", table, name)
		}
		key[name] = v
	}
	return key, nil
}

// storedSize returns the size of the item stored under key in table, 0 if
// there is none, read strongly consistently through the side client.
func (m *Meter) storedSize(ctx context.Context, table string, key map[string]types.AttributeValue) (int, error) {
	sctx, cancel := sideContext(ctx)
	defer cancel()
	out, err := m.side.GetItem(sctx, &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            key,
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return 0, fmt.Errorf("read item %s in %s: %w", keyString(key), table, err)
	}
	return itemsize.Item(out.Item), nil
}

// storedItemSize is storedSize for a full item, whose key it extracts.
func (m *Meter) storedItemSize(ctx context.Context, table string, item map[string]types.AttributeValue) (int, error) {
	key, err := m.keyOf(ctx, table, item)
	if err != nil {
		return 0, err
	}
	return m.storedSize(ctx, table, key)
}

// keyString renders a primary key canonically (attribute names sorted, type
// tags kept) so that keys can be compared and printed.
func keyString(key map[string]types.AttributeValue) string {
	names := make([]string, 0, len(key))
	for name := range key {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, name := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(name)
		b.WriteByte('=')
		switch v := key[name].(type) {
		case *types.AttributeValueMemberS:
			fmt.Fprintf(&b, "S:%q", v.Value)
		case *types.AttributeValueMemberN:
			fmt.Fprintf(&b, "N:%s", v.Value)
		case *types.AttributeValueMemberB:
			fmt.Fprintf(&b, "B:%s", base64.StdEncoding.EncodeToString(v.Value))
		default:
			fmt.Fprintf(&b, "%T", v)
		}
	}
	return b.String()
}

// placeholderRE matches expression attribute name (#name) and value (:value)
// placeholders.
var placeholderRE = regexp.MustCompile(`[#:][A-Za-z0-9_]+`)

// keepPlaceholders returns the subsets of names and values referenced by the
// given expressions; DynamoDB rejects requests carrying unused ones. Empty
// subsets are nil.
func keepPlaceholders(names map[string]string, values map[string]types.AttributeValue, exprs ...*string) (map[string]string, map[string]types.AttributeValue) {
	var keptNames map[string]string
	var keptValues map[string]types.AttributeValue
	for _, expr := range exprs {
		for _, p := range placeholderRE.FindAllString(aws.ToString(expr), -1) {
			if n, ok := names[p]; ok {
				if keptNames == nil {
					keptNames = make(map[string]string)
				}
				keptNames[p] = n
			}
			if v, ok := values[p]; ok {
				if keptValues == nil {
					keptValues = make(map[string]types.AttributeValue)
				}
				keptValues[p] = v
			}
		}
	}
	return keptNames, keptValues
}

// queryNeedsSideRead reports whether the items a Query or Scan returned may
// differ from the items it read: a filter drops items, a projection or a
// Select other than all (projected) attributes trims or omits them.
func queryNeedsSideRead(filter *string, legacyFilter int, projection *string, attributesToGet int, sel types.Select) bool {
	if filter != nil || legacyFilter > 0 || projection != nil || attributesToGet > 0 {
		return true
	}
	switch sel {
	case "", types.SelectAllAttributes, types.SelectAllProjectedAttributes:
		return false
	default:
		return true
	}
}

// queryReadSize re-runs the page of a Query without its filter and
// projection and returns the summed size of the items it reads: the items
// DynamoDB evaluated for the caller's page (same key condition, index,
// start key, limit and order).
func (m *Meter) queryReadSize(ctx context.Context, in *dynamodb.QueryInput) (int, error) {
	side := *in
	side.FilterExpression = nil
	side.QueryFilter = nil
	side.ConditionalOperator = ""
	side.ProjectionExpression = nil
	side.AttributesToGet = nil
	side.Select = ""
	side.ReturnConsumedCapacity = ""
	side.ExpressionAttributeNames, side.ExpressionAttributeValues = keepPlaceholders(
		in.ExpressionAttributeNames, in.ExpressionAttributeValues, in.KeyConditionExpression)
	sctx, cancel := sideContext(ctx)
	defer cancel()
	out, err := m.side.Query(sctx, &side)
	if err != nil {
		return 0, fmt.Errorf("re-read query page of %s: %w", aws.ToString(in.TableName), err)
	}
	return itemsSize(out.Items), nil
}

// scanReadSize is queryReadSize for a Scan.
func (m *Meter) scanReadSize(ctx context.Context, in *dynamodb.ScanInput) (int, error) {
	side := *in
	side.FilterExpression = nil
	side.ScanFilter = nil
	side.ConditionalOperator = ""
	side.ProjectionExpression = nil
	side.AttributesToGet = nil
	side.Select = ""
	side.ReturnConsumedCapacity = ""
	side.ExpressionAttributeNames = nil
	side.ExpressionAttributeValues = nil
	sctx, cancel := sideContext(ctx)
	defer cancel()
	out, err := m.side.Scan(sctx, &side)
	if err != nil {
		return 0, fmt.Errorf("re-read scan page of %s: %w", aws.ToString(in.TableName), err)
	}
	return itemsSize(out.Items), nil
}

func itemsSize(items []map[string]types.AttributeValue) int {
	size := 0
	for _, item := range items {
		size += itemsize.Item(item)
	}
	return size
}
