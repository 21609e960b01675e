package ddbstore_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/devstack"
)

// expiringClient deletes an amendment's target just before the amending
// transaction reaches DynamoDB, as TTL deletion can between the read that
// found the stored observation and the write that replaces it.
type expiringClient struct {
	*dynamodb.Client
	deleted atomic.Int32
}

func (c *expiringClient) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	for _, a := range in.TransactItems {
		if a.Put == nil || a.Put.ConditionExpression == nil || !strings.Contains(*a.Put.ConditionExpression, "#fp") {
			continue
		}
		key := map[string]types.AttributeValue{"series": a.Put.Item["series"], "evidence_ref": a.Put.Item["evidence_ref"]}
		if _, err := c.Client.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: a.Put.TableName, Key: key}); err != nil {
			return nil, err
		}
		c.deleted.Add(1)
	}
	return c.Client.TransactWriteItems(ctx, in, opts...)
}

// TestAmendmentOfExpiredObservationIsNew: in the transactional design, an
// amendment whose stored observation is gone by the time it is written is
// stored as a new observation, instead of failing its condition on every
// try. (The incremental design reads before it writes: an item gone by
// then is simply not found.)
func TestAmendmentOfExpiredObservationIsNew(t *testing.T) {
	srv := awstest.Moto(t)
	stack := awstest.NewStack(t, srv)
	client := &expiringClient{Client: dynamodb.NewFromConfig(srv.Config())}
	store := ddbstore.New(client, ddbstore.Tables{
		Identities:   stack.TableName(devstack.IdentitiesTableID),
		Observations: stack.TableName(devstack.ObservationsTableID),
		States:       stack.TableName(devstack.StatesTableID),
	}, 0)
	p := &attribution.Processor{
		Store: store, Identities: store, Publisher: discardPublisher{}, Design: attribution.Transactional,
		Registry: attribution.BuiltinRegistry(), Thresholds: attribution.DefaultThresholds(),
		Sleep: func(context.Context, time.Duration) {},
	}
	msg := func(value string) attribution.Message {
		body, _ := json.Marshal(map[string]any{
			"attacker_uuid": "att-expired", "primitive": "motor.input_modality", "value": value,
			"evidence_ref": "shard:att-expired#s001", "ts": 1764000000.0,
		})
		return attribution.Message{ID: value, Body: body}
	}
	ctx := context.Background()
	if errs := p.Process(ctx, []attribution.Message{msg("typed")}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if errs := p.Process(ctx, []attribution.Message{msg("pasted")}); errs[0] != nil {
		t.Fatalf("amendment of an expired observation failed: %v", errs[0])
	}
	if client.deleted.Load() == 0 {
		t.Fatal("the amendment was never written with its fingerprint condition; the test did not exercise the expiry")
	}
	key := attribution.SeriesKey{IdentityUUID: attribution.StubIdentityID("att-expired"), Primitive: "motor.input_modality"}
	stored, err := store.LoadObservations(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || string(stored[0].Value) != `"pasted"` {
		t.Fatalf("stored observations %+v, want only the amendment", stored)
	}
}

type discardPublisher struct{}

func (discardPublisher) Publish(context.Context, []attribution.Event) error { return nil }
