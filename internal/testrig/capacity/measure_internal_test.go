package capacity

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"decnet-attribution/internal/itemsize"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

const testTable = "T"

// fakeReader is an in-memory side client: a table "T" keyed by pk (S) and
// sk (S), and fixed pages for Query and Scan.
type fakeReader struct {
	mu        sync.Mutex
	items     map[string]map[string]types.AttributeValue
	page      []map[string]types.AttributeValue
	queries   []*dynamodb.QueryInput
	scans     []*dynamodb.ScanInput
	gets      int
	describes int
	getErr    error
}

var _ Reader = (*fakeReader)(nil)

func newFakeReader() *fakeReader {
	return &fakeReader{items: make(map[string]map[string]types.AttributeValue)}
}

func (f *fakeReader) store(item map[string]types.AttributeValue) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.items[keyString(map[string]types.AttributeValue{"pk": item["pk"], "sk": item["sk"]})] = item
}

func (f *fakeReader) GetItem(_ context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	if f.getErr != nil {
		return nil, f.getErr
	}
	if !aws.ToBool(in.ConsistentRead) {
		return nil, errors.New("side reads must be strongly consistent")
	}
	return &dynamodb.GetItemOutput{Item: f.items[keyString(in.Key)]}, nil
}

func (f *fakeReader) Query(_ context.Context, in *dynamodb.QueryInput, _ ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, in)
	return &dynamodb.QueryOutput{Items: f.page}, nil
}

func (f *fakeReader) Scan(_ context.Context, in *dynamodb.ScanInput, _ ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scans = append(f.scans, in)
	return &dynamodb.ScanOutput{Items: f.page}, nil
}

func (f *fakeReader) DescribeTable(_ context.Context, in *dynamodb.DescribeTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.describes++
	if aws.ToString(in.TableName) != testTable {
		return nil, errors.New("table not found")
	}
	return &dynamodb.DescribeTableOutput{Table: &types.TableDescription{
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
	}}, nil
}

// item returns an item of table T with the given key whose ItemSize is
// exactly size bytes.
func item(tb testing.TB, pk, sk string, size int) map[string]types.AttributeValue {
	tb.Helper()
	pad := size - (len("pk") + len(pk) + len("sk") + len(sk) + len("data"))
	if pad < 0 {
		tb.Fatalf("item of %d bytes is too small for its key", size)
	}
	it := map[string]types.AttributeValue{
		"pk":   &types.AttributeValueMemberS{Value: pk},
		"sk":   &types.AttributeValueMemberS{Value: sk},
		"data": &types.AttributeValueMemberS{Value: strings.Repeat("x", pad)},
	}
	if got := itemsize.Item(it); got != size {
		tb.Fatalf("item size %d, want %d", got, size)
	}
	return it
}

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: pk},
		"sk": &types.AttributeValueMemberS{Value: sk},
	}
}

// returns is a call that answers with out.
func returns(out any) call { return func() (any, error) { return out, nil } }

// fails is a call that answers with err.
func fails(err error) call { return func() (any, error) { return nil, err } }

func units(c cost) (rcu, wcu float64) {
	return float64(c.readHalves) / 2, float64(c.writeHalves) / 2
}

type measureCase struct {
	name     string
	setup    func(tb testing.TB, f *fakeReader)
	input    any
	do       func(tb testing.TB, f *fakeReader) call
	wantRCU  float64
	wantWCU  float64
	wantGets int  // side GetItem calls
	wantErr  bool // units incomplete
}

func runMeasureCases(t *testing.T, cases []measureCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeReader()
			if tt.setup != nil {
				tt.setup(t, f)
			}
			m := New(f)
			c, err := m.measure(context.Background(), tt.input, tt.do(t, f))
			if (err != nil) != tt.wantErr {
				t.Fatalf("measure error = %v, want error %v", err, tt.wantErr)
			}
			rcu, wcu := units(c)
			if rcu != tt.wantRCU || wcu != tt.wantWCU {
				t.Errorf("units = %v RCU %v WCU, want %v RCU %v WCU", rcu, wcu, tt.wantRCU, tt.wantWCU)
			}
			if f.gets != tt.wantGets {
				t.Errorf("side GetItem calls = %d, want %d", f.gets, tt.wantGets)
			}
		})
	}
}

func TestMeasureWrites(t *testing.T) {
	putNew := &dynamodb.PutItemInput{TableName: aws.String(testTable), Item: item(t, "p", "a", 1536)}
	conditionFailed := &types.ConditionalCheckFailedException{Message: aws.String("The conditional request failed")}
	runMeasureCases(t, []measureCase{
		{
			name:     "put of a new 1.5 KB item",
			input:    putNew,
			do:       func(testing.TB, *fakeReader) call { return returns(&dynamodb.PutItemOutput{}) },
			wantWCU:  2,
			wantGets: 1,
		},
		{
			name:     "put replacing a larger item is sized by the old item",
			setup:    func(tb testing.TB, f *fakeReader) { f.store(item(tb, "p", "a", 3000)) },
			input:    &dynamodb.PutItemInput{TableName: aws.String(testTable), Item: item(t, "p", "a", 500)},
			do:       func(testing.TB, *fakeReader) call { return returns(&dynamodb.PutItemOutput{}) },
			wantWCU:  3,
			wantGets: 1,
		},
		{
			name: "put with ReturnValues ALL_OLD takes the old item from the output",
			input: &dynamodb.PutItemInput{
				TableName: aws.String(testTable), Item: item(t, "p", "a", 500), ReturnValues: types.ReturnValueAllOld,
			},
			do: func(tb testing.TB, _ *fakeReader) call {
				return returns(&dynamodb.PutItemOutput{Attributes: item(tb, "p", "a", 2500)})
			},
			wantWCU:  3,
			wantGets: 0,
		},
		{
			name:     "put whose condition fails is sized by the existing item",
			setup:    func(tb testing.TB, f *fakeReader) { f.store(item(tb, "p", "a", 2100)) },
			input:    putNew,
			do:       func(testing.TB, *fakeReader) call { return fails(conditionFailed) },
			wantWCU:  3,
			wantGets: 1,
		},
		{
			name:  "failed condition prefers the item returned with the error",
			setup: func(tb testing.TB, f *fakeReader) { f.store(item(tb, "p", "a", 2100)) },
			input: putNew,
			do: func(tb testing.TB, _ *fakeReader) call {
				return fails(&types.ConditionalCheckFailedException{Item: item(tb, "p", "a", 5000)})
			},
			wantWCU:  5,
			wantGets: 1,
		},
		{
			name:  "failed condition with ALL_OLD and no returned item reads the item after",
			setup: func(tb testing.TB, f *fakeReader) { f.store(item(tb, "p", "a", 4000)) },
			input: &dynamodb.PutItemInput{
				TableName: aws.String(testTable), Item: item(t, "p", "a", 500), ReturnValues: types.ReturnValueAllOld,
			},
			do:       func(testing.TB, *fakeReader) call { return fails(conditionFailed) },
			wantWCU:  4,
			wantGets: 1,
		},
		{
			name:     "failed condition on a missing item costs one unit",
			input:    putNew,
			do:       func(testing.TB, *fakeReader) call { return fails(conditionFailed) },
			wantWCU:  1,
			wantGets: 1,
		},
		{
			name:     "put failing for another reason costs nothing",
			input:    putNew,
			do:       func(testing.TB, *fakeReader) call { return fails(errors.New("throttled")) },
			wantGets: 1,
		},
		{
			name:  "update is sized by the larger of before and after",
			setup: func(tb testing.TB, f *fakeReader) { f.store(item(tb, "p", "a", 500)) },
			input: &dynamodb.UpdateItemInput{TableName: aws.String(testTable), Key: key("p", "a")},
			do: func(tb testing.TB, f *fakeReader) call {
				return func() (any, error) {
					f.store(item(tb, "p", "a", 2100))
					return &dynamodb.UpdateItemOutput{}, nil
				}
			},
			wantWCU:  3,
			wantGets: 2,
		},
		{
			name:  "update that shrinks the item is sized by the item before",
			setup: func(tb testing.TB, f *fakeReader) { f.store(item(tb, "p", "a", 2100)) },
			input: &dynamodb.UpdateItemInput{TableName: aws.String(testTable), Key: key("p", "a")},
			do: func(tb testing.TB, f *fakeReader) call {
				return func() (any, error) {
					f.store(item(tb, "p", "a", 100))
					return &dynamodb.UpdateItemOutput{}, nil
				}
			},
			wantWCU:  3,
			wantGets: 2,
		},
		{
			name: "update with ALL_NEW takes the item after from the output",
			input: &dynamodb.UpdateItemInput{
				TableName: aws.String(testTable), Key: key("p", "a"), ReturnValues: types.ReturnValueAllNew,
			},
			do: func(tb testing.TB, _ *fakeReader) call {
				return returns(&dynamodb.UpdateItemOutput{Attributes: item(tb, "p", "a", 1100)})
			},
			wantWCU:  2,
			wantGets: 1,
		},
		{
			name:  "update with ALL_OLD takes the item before from the output",
			setup: func(tb testing.TB, f *fakeReader) { f.store(item(tb, "p", "a", 100)) },
			input: &dynamodb.UpdateItemInput{
				TableName: aws.String(testTable), Key: key("p", "a"), ReturnValues: types.ReturnValueAllOld,
			},
			do: func(tb testing.TB, _ *fakeReader) call {
				return returns(&dynamodb.UpdateItemOutput{Attributes: item(tb, "p", "a", 3000)})
			},
			wantWCU:  3,
			wantGets: 1,
		},
		{
			name:     "update whose condition fails is sized by the existing item",
			setup:    func(tb testing.TB, f *fakeReader) { f.store(item(tb, "p", "a", 2100)) },
			input:    &dynamodb.UpdateItemInput{TableName: aws.String(testTable), Key: key("p", "a")},
			do:       func(testing.TB, *fakeReader) call { return fails(conditionFailed) },
			wantWCU:  3,
			wantGets: 1,
		},
		{
			name:     "delete is sized by the deleted item",
			setup:    func(tb testing.TB, f *fakeReader) { f.store(item(tb, "p", "a", 2100)) },
			input:    &dynamodb.DeleteItemInput{TableName: aws.String(testTable), Key: key("p", "a")},
			do:       func(testing.TB, *fakeReader) call { return returns(&dynamodb.DeleteItemOutput{}) },
			wantWCU:  3,
			wantGets: 1,
		},
		{
			name:     "delete of a missing item costs one unit",
			input:    &dynamodb.DeleteItemInput{TableName: aws.String(testTable), Key: key("p", "a")},
			do:       func(testing.TB, *fakeReader) call { return returns(&dynamodb.DeleteItemOutput{}) },
			wantWCU:  1,
			wantGets: 1,
		},
		{
			name: "delete with ALL_OLD takes the deleted item from the output",
			input: &dynamodb.DeleteItemInput{
				TableName: aws.String(testTable), Key: key("p", "a"), ReturnValues: types.ReturnValueAllOld,
			},
			do: func(tb testing.TB, _ *fakeReader) call {
				return returns(&dynamodb.DeleteItemOutput{Attributes: item(tb, "p", "a", 5000)})
			},
			wantWCU:  5,
			wantGets: 0,
		},
		{
			name:  "batch write: each request on its own, unprocessed ones free",
			setup: func(tb testing.TB, f *fakeReader) { f.store(item(tb, "p", "b", 3000)) },
			input: &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{
				testTable: {
					{PutRequest: &types.PutRequest{Item: item(t, "p", "a", 1536)}}, // 2
					{DeleteRequest: &types.DeleteRequest{Key: key("p", "b")}},      // 3
					{PutRequest: &types.PutRequest{Item: item(t, "p", "c", 9000)}}, // unprocessed
					{PutRequest: &types.PutRequest{Item: item(t, "p", "d", 100)}},  // 1
				},
			}},
			do: func(tb testing.TB, _ *fakeReader) call {
				return returns(&dynamodb.BatchWriteItemOutput{UnprocessedItems: map[string][]types.WriteRequest{
					testTable: {{PutRequest: &types.PutRequest{Item: item(tb, "p", "c", 9000)}}},
				}})
			},
			wantWCU:  6,
			wantGets: 4,
		},
		{
			name:     "side read failure leaves a lower bound and reports it",
			setup:    func(_ testing.TB, f *fakeReader) { f.getErr = errors.New("connection refused") },
			input:    putNew,
			do:       func(testing.TB, *fakeReader) call { return returns(&dynamodb.PutItemOutput{}) },
			wantWCU:  2,
			wantGets: 1,
			wantErr:  true,
		},
		{
			name:    "put into a table whose schema cannot be described",
			input:   &dynamodb.PutItemInput{TableName: aws.String("Other"), Item: item(t, "p", "a", 100)},
			do:      func(testing.TB, *fakeReader) call { return returns(&dynamodb.PutItemOutput{}) },
			wantWCU: 1,
			wantErr: true,
		},
	})
}

func TestMeasureTransactWrites(t *testing.T) {
	input := &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: aws.String(testTable), Item: item(t, "p", "new", 500)}},
		{Update: &types.Update{TableName: aws.String(testTable), Key: key("p", "upd"), UpdateExpression: aws.String("SET x = :x")}},
		{Delete: &types.Delete{TableName: aws.String(testTable), Key: key("p", "del")}},
		{ConditionCheck: &types.ConditionCheck{TableName: aws.String(testTable), Key: key("p", "chk"), ConditionExpression: aws.String("attribute_exists(pk)")}},
	}}
	setup := func(tb testing.TB, f *fakeReader) {
		f.store(item(tb, "p", "upd", 500))
		f.store(item(tb, "p", "del", 2100))
		f.store(item(tb, "p", "chk", 400))
	}
	runMeasureCases(t, []measureCase{
		{
			name:  "committed transaction doubles each action",
			setup: setup,
			input: input,
			do: func(tb testing.TB, f *fakeReader) call {
				return func() (any, error) {
					f.store(item(tb, "p", "upd", 1500))
					return &dynamodb.TransactWriteItemsOutput{}, nil
				}
			},
			// Put 500 B: 2; Update 500 B -> 1.5 KB: 4; Delete 2.1 KB: 6;
			// ConditionCheck 400 B: 2 RCU.
			wantWCU:  12,
			wantRCU:  2,
			wantGets: 5,
		},
		{
			name:  "transaction cancelled by a condition pays the prepare phase",
			setup: setup,
			input: input,
			do: func(testing.TB, *fakeReader) call {
				return fails(&types.TransactionCanceledException{CancellationReasons: []types.CancellationReason{
					{Code: aws.String("None")},
					{Code: aws.String("None")},
					{Code: aws.String("None")},
					{Code: aws.String("ConditionalCheckFailed")},
				}})
			},
			// Put on a missing item: 1; Update 500 B: 1; Delete 2.1 KB: 3;
			// ConditionCheck 400 B: 1 RCU.
			wantWCU:  5,
			wantRCU:  1,
			wantGets: 4,
		},
		{
			name:  "transaction cancelled otherwise costs nothing",
			setup: setup,
			input: input,
			do: func(testing.TB, *fakeReader) call {
				return fails(&types.TransactionCanceledException{CancellationReasons: []types.CancellationReason{
					{Code: aws.String("TransactionConflict")},
				}})
			},
			wantGets: 4,
		},
	})
}

func TestMeasureReads(t *testing.T) {
	page := func(tb testing.TB, n, size int) []map[string]types.AttributeValue {
		items := make([]map[string]types.AttributeValue, n)
		for i := range items {
			items[i] = item(tb, "p", strings.Repeat("s", i+1), size)
		}
		return items
	}
	runMeasureCases(t, []measureCase{
		{
			name:  "get of a 3.5 KB item eventually consistent",
			input: &dynamodb.GetItemInput{TableName: aws.String(testTable), Key: key("p", "a")},
			do: func(tb testing.TB, _ *fakeReader) call {
				return returns(&dynamodb.GetItemOutput{Item: item(tb, "p", "a", 3584)})
			},
			wantRCU: 0.5,
		},
		{
			name:  "get of an 8 KB item strongly consistent",
			input: &dynamodb.GetItemInput{TableName: aws.String(testTable), Key: key("p", "a"), ConsistentRead: aws.Bool(true)},
			do: func(tb testing.TB, _ *fakeReader) call {
				return returns(&dynamodb.GetItemOutput{Item: item(tb, "p", "a", 8192)})
			},
			wantRCU: 2,
		},
		{
			name:    "get of a missing item costs the minimum",
			input:   &dynamodb.GetItemInput{TableName: aws.String(testTable), Key: key("p", "a"), ConsistentRead: aws.Bool(true)},
			do:      func(testing.TB, *fakeReader) call { return returns(&dynamodb.GetItemOutput{}) },
			wantRCU: 1,
		},
		{
			name:  "get with a projection is sized by the whole item",
			setup: func(tb testing.TB, f *fakeReader) { f.store(item(tb, "p", "a", 9000)) },
			input: &dynamodb.GetItemInput{
				TableName: aws.String(testTable), Key: key("p", "a"), ConsistentRead: aws.Bool(true),
				ProjectionExpression: aws.String("pk"),
			},
			do: func(testing.TB, *fakeReader) call {
				return returns(&dynamodb.GetItemOutput{Item: key("p", "a")})
			},
			wantRCU:  3,
			wantGets: 1,
		},
		{
			name:    "failed get costs nothing",
			input:   &dynamodb.GetItemInput{TableName: aws.String(testTable), Key: key("p", "a")},
			do:      func(testing.TB, *fakeReader) call { return fails(errors.New("no such table")) },
			wantRCU: 0,
		},
		{
			name: "batch get rounds each item: 1.5 KB and 6.5 KB strongly consistent is 12 KB",
			input: &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
				testTable: {Keys: []map[string]types.AttributeValue{key("p", "a"), key("p", "b")}, ConsistentRead: aws.Bool(true)},
			}},
			do: func(tb testing.TB, _ *fakeReader) call {
				return returns(&dynamodb.BatchGetItemOutput{Responses: map[string][]map[string]types.AttributeValue{
					testTable: {item(tb, "p", "a", 1536), item(tb, "p", "b", 6656)},
				}})
			},
			wantRCU: 3,
		},
		{
			name: "batch get: missing key costs the minimum, unprocessed key nothing",
			input: &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
				testTable: {Keys: []map[string]types.AttributeValue{key("p", "a"), key("p", "missing"), key("p", "later")}},
			}},
			do: func(tb testing.TB, _ *fakeReader) call {
				return returns(&dynamodb.BatchGetItemOutput{
					Responses: map[string][]map[string]types.AttributeValue{testTable: {item(tb, "p", "a", 5000)}},
					UnprocessedKeys: map[string]types.KeysAndAttributes{
						testTable: {Keys: []map[string]types.AttributeValue{key("p", "later")}},
					},
				})
			},
			wantRCU: 1.5,
		},
		{
			name: "batch get with a projection reads each processed key",
			setup: func(tb testing.TB, f *fakeReader) {
				f.store(item(tb, "p", "a", 5000))
				f.store(item(tb, "p", "b", 100))
			},
			input: &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
				testTable: {
					Keys:                 []map[string]types.AttributeValue{key("p", "a"), key("p", "b"), key("p", "later")},
					ProjectionExpression: aws.String("pk"),
					ConsistentRead:       aws.Bool(true),
				},
			}},
			do: func(testing.TB, *fakeReader) call {
				return returns(&dynamodb.BatchGetItemOutput{
					Responses: map[string][]map[string]types.AttributeValue{testTable: {key("p", "a"), key("p", "b")}},
					UnprocessedKeys: map[string]types.KeysAndAttributes{
						testTable: {Keys: []map[string]types.AttributeValue{key("p", "later")}},
					},
				})
			},
			wantRCU:  3,
			wantGets: 2,
		},
		{
			name: "transact get doubles strongly consistent reads",
			input: &dynamodb.TransactGetItemsInput{TransactItems: []types.TransactGetItem{
				{Get: &types.Get{TableName: aws.String(testTable), Key: key("p", "a")}},
				{Get: &types.Get{TableName: aws.String(testTable), Key: key("p", "missing")}},
			}},
			do: func(tb testing.TB, _ *fakeReader) call {
				return returns(&dynamodb.TransactGetItemsOutput{Responses: []types.ItemResponse{
					{Item: item(tb, "p", "a", 8192)}, {},
				}})
			},
			wantRCU: 6,
		},
		{
			name: "query page of 10 items of 400 B eventually consistent",
			input: &dynamodb.QueryInput{
				TableName: aws.String(testTable), KeyConditionExpression: aws.String("pk = :p"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":p": &types.AttributeValueMemberS{Value: "p"}},
			},
			do: func(tb testing.TB, _ *fakeReader) call {
				return returns(&dynamodb.QueryOutput{Items: page(tb, 10, 400)})
			},
			wantRCU: 0.5,
		},
		{
			name:  "filtered query is sized by the items read before the filter",
			setup: func(tb testing.TB, f *fakeReader) { f.page = page(tb, 12, 400) },
			input: &dynamodb.QueryInput{
				TableName: aws.String(testTable), KeyConditionExpression: aws.String("#p = :p"),
				FilterExpression:         aws.String("#d = :d"),
				ExpressionAttributeNames: map[string]string{"#p": "pk", "#d": "data"},
				ExpressionAttributeValues: map[string]types.AttributeValue{
					":p": &types.AttributeValueMemberS{Value: "p"}, ":d": &types.AttributeValueMemberS{Value: "none"},
				},
			},
			do:      func(testing.TB, *fakeReader) call { return returns(&dynamodb.QueryOutput{}) },
			wantRCU: 1, // 4800 B eventually consistent
		},
		{
			name:  "scan counting items is sized by the items read",
			setup: func(tb testing.TB, f *fakeReader) { f.page = page(tb, 3, 3000) },
			input: &dynamodb.ScanInput{
				TableName: aws.String(testTable), Select: types.SelectCount, ConsistentRead: aws.Bool(true),
			},
			do:      func(testing.TB, *fakeReader) call { return returns(&dynamodb.ScanOutput{Count: 3}) },
			wantRCU: 3, // 9000 B strongly consistent
		},
		{
			name:  "unfiltered scan is sized by its items",
			input: &dynamodb.ScanInput{TableName: aws.String(testTable)},
			do: func(tb testing.TB, _ *fakeReader) call {
				return returns(&dynamodb.ScanOutput{Items: page(tb, 3, 3000)})
			},
			wantRCU: 1.5,
		},
	})
}

func TestSideQueryDropsFilterAndProjection(t *testing.T) {
	f := newFakeReader()
	m := New(f)
	in := &dynamodb.QueryInput{
		TableName:              aws.String(testTable),
		IndexName:              aws.String("by-data"),
		KeyConditionExpression: aws.String("#p = :p AND begins_with(sk, :s)"),
		FilterExpression:       aws.String("#d = :d"),
		ProjectionExpression:   aws.String("#d"),
		ExpressionAttributeNames: map[string]string{
			"#p": "pk", "#d": "data",
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":p": &types.AttributeValueMemberS{Value: "p"},
			":s": &types.AttributeValueMemberS{Value: "a"},
			":d": &types.AttributeValueMemberS{Value: "x"},
		},
		Limit:             aws.Int32(7),
		ExclusiveStartKey: key("p", "a"),
		ScanIndexForward:  aws.Bool(false),
		ConsistentRead:    aws.Bool(true),
		Select:            types.SelectSpecificAttributes,
	}
	if _, err := m.measure(context.Background(), in, returns(&dynamodb.QueryOutput{})); err != nil {
		t.Fatalf("measure: %v", err)
	}
	if len(f.queries) != 1 {
		t.Fatalf("side queries = %d, want 1", len(f.queries))
	}
	side := f.queries[0]
	if side.FilterExpression != nil || side.ProjectionExpression != nil || side.Select != "" {
		t.Errorf("side query kept filter %v, projection %v or select %q",
			aws.ToString(side.FilterExpression), aws.ToString(side.ProjectionExpression), side.Select)
	}
	if len(side.ExpressionAttributeNames) != 1 || side.ExpressionAttributeNames["#p"] != "pk" {
		t.Errorf("side names = %v, want only #p", side.ExpressionAttributeNames)
	}
	if len(side.ExpressionAttributeValues) != 2 || side.ExpressionAttributeValues[":d"] != nil {
		t.Errorf("side values = %v, want :p and :s", side.ExpressionAttributeValues)
	}
	if aws.ToInt32(side.Limit) != 7 || aws.ToString(side.IndexName) != "by-data" ||
		keyString(side.ExclusiveStartKey) != keyString(key("p", "a")) ||
		aws.ToBool(side.ScanIndexForward) || !aws.ToBool(side.ConsistentRead) {
		t.Errorf("side query changed the page: %+v", side)
	}
	// The caller's input is untouched.
	if aws.ToString(in.FilterExpression) != "#d = :d" || len(in.ExpressionAttributeNames) != 2 ||
		len(in.ExpressionAttributeValues) != 3 || in.Select != types.SelectSpecificAttributes {
		t.Errorf("caller's input was changed: %+v", in)
	}
}

func TestSchemaIsDescribedOncePerTable(t *testing.T) {
	f := newFakeReader()
	m := New(f)
	for range 3 {
		in := &dynamodb.PutItemInput{TableName: aws.String(testTable), Item: item(t, "p", "a", 100)}
		if _, err := m.measure(context.Background(), in, returns(&dynamodb.PutItemOutput{})); err != nil {
			t.Fatalf("measure: %v", err)
		}
	}
	if f.describes != 1 {
		t.Errorf("DescribeTable calls = %d, want 1", f.describes)
	}
}

func TestPartiQLIsReportedUnmetered(t *testing.T) {
	m := New(newFakeReader())
	in := &dynamodb.ExecuteStatementInput{Statement: aws.String(`SELECT * FROM "T"`)}
	_, err := m.measure(context.Background(), in, returns(&dynamodb.ExecuteStatementOutput{}))
	if !errors.Is(err, errUnsupported) {
		t.Errorf("measure error = %v, want %v", err, errUnsupported)
	}
}

func TestControlPlaneCostsNothing(t *testing.T) {
	m := New(newFakeReader())
	called := false
	c, err := m.measure(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String(testTable)},
		func() (any, error) { called = true; return &dynamodb.DescribeTableOutput{}, nil })
	if err != nil || c != (cost{}) || !called {
		t.Errorf("measure = %+v, %v, called %v; want zero cost, no error, called", c, err, called)
	}
}

func TestRecordSnapshotReset(t *testing.T) {
	m := New(newFakeReader())
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				m.record("GetItem", cost{readHalves: 1}, nil)
				m.record("PutItem", cost{writeHalves: 4}, nil)
			}
		})
	}
	wg.Wait()
	m.record("ExecuteStatement", cost{}, &MeterError{Operation: "ExecuteStatement", Err: errUnsupported})

	s := m.Snapshot()
	want := map[string]Usage{
		"GetItem":          {Requests: workers * each, RCU: workers * each * 0.5},
		"PutItem":          {Requests: workers * each, WCU: workers * each * 2},
		"ExecuteStatement": {Requests: 1},
	}
	for name, u := range want {
		if s.Operations[name] != u {
			t.Errorf("%s = %+v, want %+v", name, s.Operations[name], u)
		}
	}
	wantTotal := Usage{Requests: 2*workers*each + 1, RCU: workers * each * 0.5, WCU: workers * each * 2}
	if s.Total != wantTotal {
		t.Errorf("total = %+v, want %+v", s.Total, wantTotal)
	}
	if s.Incomplete != 1 || !errors.Is(s.Err, errUnsupported) {
		t.Errorf("incomplete = %d, err = %v; want 1 and %v", s.Incomplete, s.Err, errUnsupported)
	}
	if got := strings.Join(s.Names(), ","); got != "ExecuteStatement,GetItem,PutItem" {
		t.Errorf("names = %s", got)
	}

	m.Reset()
	s = m.Snapshot()
	if len(s.Operations) != 0 || s.Total != (Usage{}) || s.Incomplete != 0 || s.Err != nil {
		t.Errorf("after reset: %+v", s)
	}
}

func TestSideReadContextPassesThrough(t *testing.T) {
	ctx, cancel := sideContext(context.Background())
	defer cancel()
	if !isSideRead(ctx) {
		t.Error("side context not marked")
	}
	if isSideRead(context.Background()) {
		t.Error("plain context marked as side read")
	}
}
