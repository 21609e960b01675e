package capacity_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"decnet-attribution/internal/itemsize"
	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/capacity"
	"decnet-attribution/internal/testrig/devstack"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// mustMeteredClient returns a DynamoDB client for the shared moto server
// with the meter attached, and the meter.
func mustMeteredClient(tb testing.TB) (*dynamodb.Client, *capacity.Meter) {
	tb.Helper()
	cfg := awstest.Moto(tb).Config()
	meter := capacity.New(dynamodb.NewFromConfig(cfg))
	return dynamodb.NewFromConfig(cfg, meter.Option()), meter
}

// sized returns an item keyed (pk, sk) whose size is exactly size bytes.
func sized(tb testing.TB, pk, sk string, size int) map[string]types.AttributeValue {
	tb.Helper()
	pad := size - (len("pk") + len(pk) + len("sk") + len(sk) + len("data"))
	if pad < 0 {
		tb.Fatalf("item of %d bytes is too small for its key", size)
	}
	item := map[string]types.AttributeValue{
		"pk":   &types.AttributeValueMemberS{Value: pk},
		"sk":   &types.AttributeValueMemberS{Value: sk},
		"data": &types.AttributeValueMemberS{Value: strings.Repeat("x", pad)},
	}
	if got := itemsize.Item(item); got != size {
		tb.Fatalf("item size %d, want %d", got, size)
	}
	return item
}

func pkSK(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: pk},
		"sk": &types.AttributeValueMemberS{Value: sk},
	}
}

// expectUsage checks that since the last reset exactly one operation was
// called, with the given usage, and that nothing was left incomplete; then
// it resets the meter.
func expectUsage(tb testing.TB, meter *capacity.Meter, op string, want capacity.Usage) {
	tb.Helper()
	s := meter.Snapshot()
	if s.Err != nil || s.Incomplete != 0 {
		tb.Errorf("%s: %d incomplete: %v", op, s.Incomplete, s.Err)
	}
	if got := s.Operations[op]; got != want {
		tb.Errorf("%s usage = %+v, want %+v", op, got, want)
	}
	if len(s.Operations) != 1 || s.Total != want {
		tb.Errorf("%s: snapshot has %v, total %+v; want only %s", op, s.Names(), s.Total, op)
	}
	meter.Reset()
}

func TestMeterAgainstMoto(t *testing.T) {
	ctx := context.Background()
	client, meter := mustMeteredClient(t)
	table := devstack.UniqueName("capacity-meter-")

	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
		BillingMode: types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatalf("create table: %v", err)
	}
	expectUsage(t, meter, "CreateTable", capacity.Usage{Requests: 1})

	put := func(item map[string]types.AttributeValue) {
		t.Helper()
		if _, err := client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
			t.Fatalf("put item: %v", err)
		}
	}

	t.Run("put new 1.5 KB item", func(t *testing.T) {
		put(sized(t, "p1", "a", 1536))
		expectUsage(t, meter, "PutItem", capacity.Usage{Requests: 1, WCU: 2})
	})

	t.Run("put replacing it with 500 B is sized by the old item", func(t *testing.T) {
		put(sized(t, "p1", "a", 500))
		expectUsage(t, meter, "PutItem", capacity.Usage{Requests: 1, WCU: 2})
	})

	t.Run("get eventually consistent", func(t *testing.T) {
		out, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: pkSK("p1", "a")})
		if err != nil {
			t.Fatalf("get item: %v", err)
		}
		if got := itemsize.Item(out.Item); got != 500 {
			t.Errorf("caller got an item of %d bytes, want 500", got)
		}
		expectUsage(t, meter, "GetItem", capacity.Usage{Requests: 1, RCU: 0.5})
	})

	t.Run("put and get an 8 KB item", func(t *testing.T) {
		put(sized(t, "p1", "big", 8192))
		expectUsage(t, meter, "PutItem", capacity.Usage{Requests: 1, WCU: 8})

		_, err := client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String(table), Key: pkSK("p1", "big"), ConsistentRead: aws.Bool(true),
		})
		if err != nil {
			t.Fatalf("get item: %v", err)
		}
		expectUsage(t, meter, "GetItem", capacity.Usage{Requests: 1, RCU: 2})
	})

	t.Run("projection does not reduce a get", func(t *testing.T) {
		out, err := client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String(table), Key: pkSK("p1", "big"), ConsistentRead: aws.Bool(true),
			ProjectionExpression: aws.String("pk"),
		})
		if err != nil {
			t.Fatalf("get item: %v", err)
		}
		if len(out.Item) != 1 || out.Item["pk"] == nil {
			t.Errorf("caller's projection not honoured: %v", out.Item)
		}
		expectUsage(t, meter, "GetItem", capacity.Usage{Requests: 1, RCU: 2})
	})

	t.Run("get of a missing item costs the minimum", func(t *testing.T) {
		out, err := client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String(table), Key: pkSK("p1", "nothing"), ConsistentRead: aws.Bool(true),
		})
		if err != nil {
			t.Fatalf("get item: %v", err)
		}
		if out.Item != nil {
			t.Errorf("missing item returned %v", out.Item)
		}
		expectUsage(t, meter, "GetItem", capacity.Usage{Requests: 1, RCU: 1})
	})

	t.Run("update growing 500 B to 2100 B", func(t *testing.T) {
		grown := sized(t, "p1", "a", 2100)
		out, err := client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 aws.String(table),
			Key:                       pkSK("p1", "a"),
			UpdateExpression:          aws.String("SET #d = :d"),
			ExpressionAttributeNames:  map[string]string{"#d": "data"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":d": grown["data"]},
		})
		if err != nil {
			t.Fatalf("update item: %v", err)
		}
		if out.Attributes != nil {
			t.Errorf("caller got attributes it did not ask for: %v", out.Attributes)
		}
		expectUsage(t, meter, "UpdateItem", capacity.Usage{Requests: 1, WCU: 3})
	})

	t.Run("put whose condition fails is sized by the existing item", func(t *testing.T) {
		_, err := client.PutItem(ctx, &dynamodb.PutItemInput{
			TableName:           aws.String(table),
			Item:                sized(t, "p1", "a", 100),
			ConditionExpression: aws.String("attribute_not_exists(pk)"),
		})
		var ccf *types.ConditionalCheckFailedException
		if !errors.As(err, &ccf) {
			t.Fatalf("put item error = %v, want ConditionalCheckFailedException", err)
		}
		expectUsage(t, meter, "PutItem", capacity.Usage{Requests: 1, WCU: 3})
	})

	t.Run("batch write of 12 items of 400 B", func(t *testing.T) {
		var reqs []types.WriteRequest
		for i := range 12 {
			reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: sized(t, "q", fmt.Sprintf("s%02d", i), 400)}})
		}
		out, err := client.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{
			RequestItems: map[string][]types.WriteRequest{table: reqs},
		})
		if err != nil {
			t.Fatalf("batch write: %v", err)
		}
		if len(out.UnprocessedItems) != 0 {
			t.Fatalf("unprocessed items: %v", out.UnprocessedItems)
		}
		expectUsage(t, meter, "BatchWriteItem", capacity.Usage{Requests: 1, WCU: 12})
	})

	query := func(t *testing.T, in *dynamodb.QueryInput) *dynamodb.QueryOutput {
		t.Helper()
		in.TableName = aws.String(table)
		in.KeyConditionExpression = aws.String("pk = :q")
		if in.ExpressionAttributeValues == nil {
			in.ExpressionAttributeValues = map[string]types.AttributeValue{}
		}
		in.ExpressionAttributeValues[":q"] = &types.AttributeValueMemberS{Value: "q"}
		out, err := client.Query(ctx, in)
		if err != nil {
			t.Fatalf("query: %v", err)
		}
		return out
	}

	t.Run("query of 12 items of 400 B", func(t *testing.T) {
		if out := query(t, &dynamodb.QueryInput{}); out.Count != 12 {
			t.Errorf("count = %d, want 12", out.Count)
		}
		expectUsage(t, meter, "Query", capacity.Usage{Requests: 1, RCU: 1}) // 4800 B eventually

		query(t, &dynamodb.QueryInput{ConsistentRead: aws.Bool(true)})
		expectUsage(t, meter, "Query", capacity.Usage{Requests: 1, RCU: 2})
	})

	t.Run("query of 10 items of 400 B eventually consistent", func(t *testing.T) {
		if out := query(t, &dynamodb.QueryInput{Limit: aws.Int32(10)}); out.Count != 10 {
			t.Errorf("count = %d, want 10", out.Count)
		}
		expectUsage(t, meter, "Query", capacity.Usage{Requests: 1, RCU: 0.5})
	})

	t.Run("filtered query is charged for the items read", func(t *testing.T) {
		out := query(t, &dynamodb.QueryInput{
			FilterExpression:          aws.String("sk = :s"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":s": &types.AttributeValueMemberS{Value: "s03"}},
		})
		if out.Count != 1 {
			t.Errorf("filtered count = %d, want 1", out.Count)
		}
		expectUsage(t, meter, "Query", capacity.Usage{Requests: 1, RCU: 1})
	})

	t.Run("transaction writes double each action", func(t *testing.T) {
		bigger := sized(t, "p1", "a", 3000)
		_, err := client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
			{Put: &types.Put{TableName: aws.String(table), Item: sized(t, "t", "new", 500)}},
			{Update: &types.Update{
				TableName:                 aws.String(table),
				Key:                       pkSK("p1", "a"),
				UpdateExpression:          aws.String("SET #d = :d"),
				ExpressionAttributeNames:  map[string]string{"#d": "data"},
				ExpressionAttributeValues: map[string]types.AttributeValue{":d": bigger["data"]},
			}},
			{Delete: &types.Delete{TableName: aws.String(table), Key: pkSK("p1", "big")}},
			{ConditionCheck: &types.ConditionCheck{
				TableName: aws.String(table), Key: pkSK("q", "s00"), ConditionExpression: aws.String("attribute_exists(pk)"),
			}},
		}})
		if err != nil {
			t.Fatalf("transact write: %v", err)
		}
		// Put 500 B: 2; Update 2100 B -> 3000 B: 6; Delete 8 KB: 16;
		// ConditionCheck 400 B: 2 RCU.
		expectUsage(t, meter, "TransactWriteItems", capacity.Usage{Requests: 1, WCU: 24, RCU: 2})
	})

	t.Run("transaction cancelled by a failed condition", func(t *testing.T) {
		_, err := client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
			{Put: &types.Put{TableName: aws.String(table), Item: sized(t, "t", "new2", 500)}},
			{ConditionCheck: &types.ConditionCheck{
				TableName: aws.String(table), Key: pkSK("p1", "a"), ConditionExpression: aws.String("attribute_not_exists(pk)"),
			}},
		}})
		var canceled *types.TransactionCanceledException
		if !errors.As(err, &canceled) {
			t.Fatalf("transact write error = %v, want TransactionCanceledException", err)
		}
		// Prepare phase only: Put on a missing item 1 WCU; ConditionCheck
		// on the 3000 B item 1 RCU.
		expectUsage(t, meter, "TransactWriteItems", capacity.Usage{Requests: 1, WCU: 1, RCU: 1})

		out, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: pkSK("t", "new2")})
		if err != nil {
			t.Fatalf("get item: %v", err)
		}
		if out.Item != nil {
			t.Errorf("cancelled transaction wrote its put")
		}
		meter.Reset()
	})

	t.Run("transaction get", func(t *testing.T) {
		out, err := client.TransactGetItems(ctx, &dynamodb.TransactGetItemsInput{TransactItems: []types.TransactGetItem{
			{Get: &types.Get{TableName: aws.String(table), Key: pkSK("t", "new")}},
			{Get: &types.Get{TableName: aws.String(table), Key: pkSK("t", "missing")}},
		}})
		if err != nil {
			t.Fatalf("transact get: %v", err)
		}
		if len(out.Responses) != 2 {
			t.Errorf("responses = %d, want 2", len(out.Responses))
		}
		expectUsage(t, meter, "TransactGetItems", capacity.Usage{Requests: 1, RCU: 4})
	})

	t.Run("batch get rounds each item", func(t *testing.T) {
		_, err := client.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
			table: {Keys: []map[string]types.AttributeValue{pkSK("q", "s01"), pkSK("p1", "a"), pkSK("q", "missing")}},
		}})
		if err != nil {
			t.Fatalf("batch get: %v", err)
		}
		expectUsage(t, meter, "BatchGetItem", capacity.Usage{Requests: 1, RCU: 1.5})
	})

	t.Run("delete 3000 B item", func(t *testing.T) {
		_, err := client.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(table), Key: pkSK("p1", "a")})
		if err != nil {
			t.Fatalf("delete item: %v", err)
		}
		expectUsage(t, meter, "DeleteItem", capacity.Usage{Requests: 1, WCU: 3})
	})

	t.Run("filtered scan is charged for the whole table read", func(t *testing.T) {
		// Left: (t,new) 500 B and 12 items of 400 B: 5300 B.
		out, err := client.Scan(ctx, &dynamodb.ScanInput{
			TableName:                 aws.String(table),
			FilterExpression:          aws.String("pk = :t"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":t": &types.AttributeValueMemberS{Value: "t"}},
			ConsistentRead:            aws.Bool(true),
		})
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		if out.Count != 1 || out.ScannedCount != 13 {
			t.Errorf("scan count %d scanned %d, want 1 and 13", out.Count, out.ScannedCount)
		}
		expectUsage(t, meter, "Scan", capacity.Usage{Requests: 1, RCU: 2})
	})

	t.Run("concurrent callers", func(t *testing.T) {
		const workers, each = 4, 5
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		for range workers {
			wg.Go(func() {
				for range each {
					_, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: pkSK("q", "s01")})
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("get item: %v", err)
			}
		}
		expectUsage(t, meter, "GetItem", capacity.Usage{Requests: workers * each, RCU: workers * each * 0.5})
	})

	t.Run("failed request counts without units", func(t *testing.T) {
		_, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("no-such-table"), Key: pkSK("a", "b")})
		if err == nil {
			t.Fatal("get from a missing table succeeded")
		}
		expectUsage(t, meter, "GetItem", capacity.Usage{Requests: 1})
	})
}
