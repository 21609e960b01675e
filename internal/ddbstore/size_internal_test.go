package ddbstore

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"decnet-attribution/internal/attribution"
)

// TestCommitBytesBoundsTheTransaction: the processor cuts commits by
// attribution.Commit.Bytes; it must never be below the size DynamoDB
// counts for the transaction this store sends, or a commit planned within
// 4 MB could still be refused.
func TestCommitBytesBoundsTheTransaction(t *testing.T) {
	th := attribution.DefaultThresholds()
	th.Window = attribution.MaxWindow
	s := New(nil, Tables{Identities: "ids", Observations: "obs", States: "states"}, 30*24*time.Hour)
	for _, valueBytes := range []int{1, 100, 1000} {
		c := &attribution.Commit{Identity: &attribution.IdentityRecord{IdentityUUID: "id-1", Flagged: []string{"a.b", "c.d"}, Version: 3}}
		for prim := range 5 {
			key := attribution.SeriesKey{IdentityUUID: "id-1", Primitive: fmt.Sprintf("cognitive.p%d", prim)}
			rec := attribution.NewSeriesRecord(key, attribution.Categorical, th)
			for n := range 2 * attribution.MaxWindow {
				o := attribution.Observation{
					Primitive: key.Primitive, EvidenceRef: fmt.Sprintf("shard:att-1#%s%04d", strings.Repeat("e", 200), n),
					Value: attribution.Value(fmt.Sprintf(`"%d-%s"`, n, strings.Repeat("v", valueBytes))), TS: float64(n), AttackerUUID: "att-1",
				}
				rec.Series.Add(o.Point())
				if _, err := rec.Settle(rec.Series.State(th), o.AttackerUUID); err != nil {
					t.Fatal(err)
				}
				if n%40 == 0 {
					c.Observations = append(c.Observations, attribution.ObservationWrite{Key: key, Observation: o, Replaces: "fp"})
				}
			}
			rec.Version = 7
			c.Series = append(c.Series, rec)
		}
		var actions []types.TransactWriteItem
		for _, w := range c.Observations {
			put, err := s.observationPut(w)
			if err != nil {
				t.Fatal(err)
			}
			actions = append(actions, types.TransactWriteItem{Put: put})
		}
		for _, r := range c.Series {
			u, err := s.recordUpdate(stateKey(r.Key.IdentityUUID, r.Key.Primitive), r, r.Version, r.Published)
			if err != nil {
				t.Fatal(err)
			}
			actions = append(actions, types.TransactWriteItem{Update: u})
		}
		u, err := s.recordUpdate(stateKey("id-1", identityItem), c.Identity, c.Identity.Version, c.Identity.Published)
		if err != nil {
			t.Fatal(err)
		}
		actions = append(actions, types.TransactWriteItem{Update: u})
		if sent, bound := transactionBytes(actions), c.Bytes(); sent > bound {
			t.Errorf("values of %d bytes: the transaction is %d bytes, Commit.Bytes says at most %d", valueBytes, sent, bound)
		}
	}
}
