package ddbstore_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/testrig/devstack"
)

// setVersion overwrites the stored version attribute of a series record.
func setVersion(t *testing.T, client *dynamodb.Client, table string, key attribution.SeriesKey, v types.AttributeValue) {
	t.Helper()
	_, err := client.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName: aws.String(table),
		Key: map[string]types.AttributeValue{
			"identity_uuid": &types.AttributeValueMemberS{Value: key.IdentityUUID},
			"primitive":     &types.AttributeValueMemberS{Value: key.Primitive},
		},
		UpdateExpression:          aws.String("SET v = :v"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": v},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func commitFirst(t *testing.T, store interface {
	Commit(context.Context, *attribution.Commit) error
}, key attribution.SeriesKey, ref string) *attribution.SeriesRecord {
	t.Helper()
	rec := attribution.NewSeriesRecord(key, attribution.Categorical, attribution.DefaultThresholds())
	o := attribution.Observation{Primitive: key.Primitive, Value: `"typed"`, EvidenceRef: ref, TS: 10, AttackerUUID: "att-n"}
	rec.Series.Add(o.Point())
	if err := store.Commit(context.Background(), &attribution.Commit{
		Observations: []attribution.ObservationWrite{{Key: key, Observation: o}},
		Series:       []*attribution.SeriesRecord{rec},
	}); err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestVersionsAreExactIntegers: a version above 2^53 is compared and
// written exactly, not rounded through float64 (which made every commit
// of such a record a version conflict).
func TestVersionsAreExactIntegers(t *testing.T) {
	store, stack := mustStore(t)
	client := store.Client.(*dynamodb.Client)
	ctx := context.Background()
	key := attribution.SeriesKey{IdentityUUID: "id-big-version", Primitive: "motor.input_modality"}
	commitFirst(t, store, key, "r1")
	setVersion(t, client, stack.TableName(devstack.StatesTableID), key, &types.AttributeValueMemberN{Value: "9007199254740993"})
	recs, err := store.LoadSeries(ctx, key.IdentityUUID, []string{key.Primitive}, true)
	if err != nil {
		t.Fatal(err)
	}
	rec := recs[key.Primitive]
	if rec.Version != 9007199254740993 {
		t.Fatalf("version read as %d", rec.Version)
	}
	o := attribution.Observation{Primitive: key.Primitive, Value: `"typed"`, EvidenceRef: "r2", TS: 11, AttackerUUID: "att-n"}
	rec.Series.Add(o.Point())
	if err := store.Commit(ctx, &attribution.Commit{
		Observations: []attribution.ObservationWrite{{Key: key, Observation: o}},
		Series:       []*attribution.SeriesRecord{rec},
	}); err != nil {
		t.Fatalf("commit at version 2^53+1: %v", err)
	}
	recs, err = store.LoadSeries(ctx, key.IdentityUUID, []string{key.Primitive}, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := recs[key.Primitive].Version; got != 9007199254740994 {
		t.Fatalf("version after commit = %d, want 9007199254740994", got)
	}
}

// TestUnreadableVersionIsAnError: a version attribute that is not an
// integer is reported, not read as 0 (which would let a writer of a new
// record overwrite it).
func TestUnreadableVersionIsAnError(t *testing.T) {
	store, stack := mustStore(t)
	client := store.Client.(*dynamodb.Client)
	key := attribution.SeriesKey{IdentityUUID: "id-bad-version", Primitive: "motor.input_modality"}
	commitFirst(t, store, key, "r1")
	for _, v := range []types.AttributeValue{
		&types.AttributeValueMemberS{Value: "1"},
		&types.AttributeValueMemberN{Value: "1.5"},
	} {
		setVersion(t, client, stack.TableName(devstack.StatesTableID), key, v)
		_, err := store.LoadSeries(context.Background(), key.IdentityUUID, []string{key.Primitive}, true)
		if err == nil || !strings.Contains(err.Error(), "attribute v") {
			t.Errorf("version %#v: err = %v, want one naming attribute v", v, err)
		}
	}
}
