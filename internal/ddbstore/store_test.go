package ddbstore_test

import (
	"context"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/capacity"
	"decnet-attribution/internal/testrig/devstack"
	"decnet-attribution/internal/testrig/storetest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

func mustStore(t *testing.T, opts ...func(*dynamodb.Options)) (*ddbstore.Store, *devstack.Stack) {
	t.Helper()
	srv := awstest.Moto(t)
	stack := awstest.NewStack(t, srv)
	client := dynamodb.NewFromConfig(srv.Config(), opts...)
	return ddbstore.New(client, ddbstore.Tables{
		Identities:   stack.TableName(devstack.IdentitiesTableID),
		Observations: stack.TableName(devstack.ObservationsTableID),
		States:       stack.TableName(devstack.StatesTableID),
	}, 0), stack
}

// TestStoreContract runs the store contract against DynamoDB (moto).
func TestStoreContract(t *testing.T) {
	store, _ := mustStore(t)
	// The tables are shared by the subtests: each uses its own keys.
	storetest.Run(t, func(*testing.T) storetest.Backend { return store })
}

// TestStateItemFitsOneWriteUnit checks the compact record encoding: a full
// window of a common categorical primitive, with realistic evidence refs
// and an unacknowledged event in the outbox, stays within 1 KB.
func TestStateItemFitsOneWriteUnit(t *testing.T) {
	srv := awstest.Moto(t)
	meter := capacity.New(dynamodb.NewFromConfig(srv.Config()))
	store, _ := mustStore(t, meter.Option())
	ctx := context.Background()
	th := attribution.DefaultThresholds()
	cases := []struct {
		primitive string
		kind      attribution.Kind
		value     func(i int) string
	}{
		{"motor.input_modality", attribution.Categorical, func(i int) string { return []string{`"typed"`, `"pasted"`}[i%2] }},
		{"toolchain.c2.beacon_interval_ms", attribution.Numeric, func(i int) string { return "3000" + string(rune('0'+i%10)) + ".25" }},
		{"motor.digraph_simhash", attribution.Hash, func(i int) string { return `"5713` + string(rune('a'+i%3)) + `1ea9d6d419c"` }},
	}
	for _, tc := range cases {
		t.Run(tc.primitive, func(t *testing.T) {
			key := attribution.SeriesKey{IdentityUUID: attribution.StubIdentityID("att-7f3c2b9e-41d5"), Primitive: tc.primitive}
			rec := attribution.NewSeriesRecord(key, tc.kind, th)
			for i := range 30 {
				o := attribution.Observation{
					ID: "obs-1", Primitive: tc.primitive, Value: attribution.Value(tc.value(i)),
					EvidenceRef: "shard:att-7f3c2b9e-41d5#s" + string(rune('a'+i/26)) + string(rune('a'+i%26)),
					TS:          1764000000.123 + float64(i)*3600.5, AttackerUUID: "att-7f3c2b9e-41d5",
				}
				rec.Series.Add(o.Point())
				if _, err := rec.Settle(rec.Series.State(th), o.AttackerUUID); err != nil {
					t.Fatal(err)
				}
				meter.Reset()
				c := &attribution.Commit{
					Observations: []attribution.ObservationWrite{{Key: key, Observation: o}},
					Series:       []*attribution.SeriesRecord{rec},
				}
				if err := store.Commit(ctx, c); err != nil {
					t.Fatal(err)
				}
				rec.Version++
				// One transaction: 2 × (observation 1 WCU + state 1 WCU).
				if got := meter.Snapshot().Total.WCU; got != 4 {
					t.Fatalf("observation %d: commit cost %v WCU, want 4 (both items within 1 KB)", i, got)
				}
			}
		})
	}
}

// TestAttackerItemsBeforeTheUnflushedList: an attacker item written when it
// kept only the identity the attacker left (prev) reads as a list of that
// one; the next change replaces it, and a change that wrote no identity
// clears the list.
func TestAttackerItemsBeforeTheUnflushedList(t *testing.T) {
	store, stack := mustStore(t)
	ctx := context.Background()
	_, err := store.Client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(stack.TableName(devstack.IdentitiesTableID)),
		Item: map[string]types.AttributeValue{
			"attacker_uuid": &types.AttributeValueMemberS{Value: "att-old"},
			"identity_uuid": &types.AttributeValueMemberS{Value: "id-2"},
			"stamp_ts":      &types.AttributeValueMemberN{Value: "1714054176.25"},
			"stamp_id":      &types.AttributeValueMemberS{Value: "e-1"},
			"prev":          &types.AttributeValueMemberS{Value: "id-1"},
			"v":             &types.AttributeValueMemberN{Value: "1"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := store.LoadAttacker(ctx, "att-old")
	if err != nil || !slices.Equal(a.Unflushed, []string{"id-1"}) || a.IdentityUUID != "id-2" || a.Version != 1 {
		t.Fatalf("attacker item with prev: %+v, %v", a, err)
	}
	for _, unflushed := range [][]string{{"id-2", "id-3"}, nil} {
		a.IdentityUUID, a.Unflushed = "id-3", unflushed
		if err := store.CommitMembership(ctx, &attribution.MembershipCommit{Attackers: []*attribution.AttackerRecord{a}}); err != nil {
			t.Fatal(err)
		}
		if a, err = store.LoadAttacker(ctx, "att-old"); err != nil || !slices.Equal(a.Unflushed, unflushed) {
			t.Fatalf("after a change that wrote %v: %+v, %v", unflushed, a, err)
		}
	}
}
