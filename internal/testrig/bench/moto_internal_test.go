package bench

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
	"decnet-attribution/internal/itemsize"
	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/capacity"
	"decnet-attribution/internal/testrig/devstack"
	"decnet-attribution/internal/testrig/storetest"
)

// mustFastMoto starts the benchmark's moto launcher in verify mode: every
// read answer is encoded by moto's serializer too, and a difference fails
// the request (so the store's calls fail).
func mustFastMoto(t *testing.T) (*awstest.Server, *devstack.Stack) {
	t.Helper()
	m, err := StartFastMoto(FastMotoOptions{Verify: true})
	if err != nil {
		t.Fatalf("the benchmark's moto launcher did not start: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("moto output:\n%s", m.Process.Output())
		}
	})
	srv := &awstest.Server{Endpoint: m.Endpoint}
	return srv, awstest.NewStack(t, srv)
}

func storeOn(srv *awstest.Server, stack *devstack.Stack) *ddbstore.Store {
	return ddbstore.New(dynamodb.NewFromConfig(srv.Config()), ddbstore.Tables{
		Identities:   stack.TableName(devstack.IdentitiesTableID),
		Observations: stack.TableName(devstack.ObservationsTableID),
		States:       stack.TableName(devstack.StatesTableID),
	}, 0)
}

// TestFastMotoKeepsTheStoreContract: the launcher's changes to moto
// (journalled transactions, partition-only queries, direct JSON answers)
// leave the store's behaviour as moto's own.
func TestFastMotoKeepsTheStoreContract(t *testing.T) {
	srv, stack := mustFastMoto(t)
	store := storeOn(srv, stack)
	storetest.Run(t, func(*testing.T) storetest.Backend { return store })

	t.Run("a cancelled transaction leaves every item as it was", func(t *testing.T) {
		ctx := context.Background()
		w := NewWorkload("r")
		s := Series{Attacker: 0, Primitive: 0}
		key := w.Key(s)
		rec := attribution.NewSeriesRecord(key, attribution.Categorical, attribution.DefaultThresholds())
		first := w.Observation(s, 1)
		if err := store.Commit(ctx, &attribution.Commit{Observations: []attribution.ObservationWrite{{Key: key, Observation: first}}, Series: []*attribution.SeriesRecord{rec}}); err != nil {
			t.Fatal(err)
		}
		stored, err := store.LoadSeries(ctx, key.IdentityUUID, []string{key.Primitive}, true)
		if err != nil {
			t.Fatal(err)
		}
		// A new observation, the stored one again, and the record: the
		// second put's condition fails, so nothing may change.
		again := stored[key.Primitive]
		again.Series.Count = 99
		err = store.Commit(ctx, &attribution.Commit{
			Observations: []attribution.ObservationWrite{{Key: key, Observation: w.Observation(s, 2)}, {Key: key, Observation: first}},
			Series:       []*attribution.SeriesRecord{again},
		})
		var exists *attribution.ObservationExistsError
		if !errors.As(err, &exists) || exists.Index != 1 {
			t.Fatalf("got %v, want the second observation reported as stored", err)
		}
		obs, err := store.LoadObservations(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(obs) != 1 || obs[0].EvidenceRef != first.EvidenceRef {
			t.Errorf("after the cancelled transaction the series holds %d observations, want only the first", len(obs))
		}
		after, err := store.LoadSeries(ctx, key.IdentityUUID, []string{key.Primitive}, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := after[key.Primitive]; got.Version != 1 || got.Series.Count != 0 {
			t.Errorf("record at version %d with count %d, want untouched (version 1, count 0)", got.Version, got.Series.Count)
		}
	})

	t.Run("a query reads its own partition only", func(t *testing.T) {
		ctx := context.Background()
		w := NewWorkload("q")
		for p, n := range []int{3, 5} {
			s := Series{Attacker: 0, Primitive: p}
			c := &attribution.Commit{}
			for i := 1; i <= n; i++ {
				c.Observations = append(c.Observations, attribution.ObservationWrite{Key: w.Key(s), Observation: w.Observation(s, i)})
			}
			if err := store.Commit(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		for p, n := range []int{3, 5} {
			obs, err := store.LoadObservations(ctx, w.Key(Series{Attacker: 0, Primitive: p}))
			if err != nil {
				t.Fatal(err)
			}
			if len(obs) != n {
				t.Errorf("series %d: %d observations, want %d", p, len(obs), n)
			}
		}
	})
}

// TestProbePausesTheMeter: a paused probe takes the capacity meter off the
// client's requests; running, it attributes each request to its identity.
func TestProbePausesTheMeter(t *testing.T) {
	srv := awstest.Moto(t)
	stack := awstest.NewStack(t, srv)
	meter := capacity.New(dynamodb.NewFromConfig(srv.Config()))
	p := newProbe()
	w := NewWorkload("p")
	p.know(w.Attacker(0), w.Identity(0))
	client := dynamodb.NewFromConfig(srv.Config(), meter.Option(), p.dynamoDBOption)
	get := func() {
		t.Helper()
		_, err := client.GetItem(context.Background(), &dynamodb.GetItemInput{
			TableName: aws.String(stack.TableName(devstack.StatesTableID)),
			Key:       stateKey(w.Key(Series{})),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	p.paused.Store(true)
	get()
	if s := meter.Snapshot(); s.Total.Requests != 0 {
		t.Errorf("paused: the meter counted %d requests", s.Total.Requests)
	}
	p.paused.Store(false)
	get()
	get()
	if s := meter.Snapshot(); s.Total.Requests != 2 || s.Total.RCU != 1 {
		t.Errorf("running: the meter counted %+v, want 2 requests and 1 read unit", s.Total)
	}
	if critical, unattributed, _, _ := p.counts(); critical != 2 || unattributed != 0 {
		t.Errorf("probe: %d requests for the identity and %d unattributed, want 2 and 0", critical, unattributed)
	}
}

// TestProbeSizesIdentityRecords: the probe counts the write units of the
// identity record in a transaction, as the meter would charge them, and
// records the observation items written (which carry no events: those wait
// in the record's outbox).
func TestProbeSizesIdentityRecords(t *testing.T) {
	ctx := context.Background()
	srv := awstest.Moto(t)
	stack := awstest.NewStack(t, srv)
	tables := ddbstore.Tables{
		Identities:   stack.TableName(devstack.IdentitiesTableID),
		Observations: stack.TableName(devstack.ObservationsTableID),
		States:       stack.TableName(devstack.StatesTableID),
	}
	meter := capacity.New(dynamodb.NewFromConfig(srv.Config()))
	p := newProbe()
	p.sizeWrites(dynamodb.NewFromConfig(srv.Config()), tables.States, tables.Observations)
	w := NewWorkload("p")
	p.know(w.Attacker(0), w.Identity(0))
	store := ddbstore.New(dynamodb.NewFromConfig(srv.Config(), meter.Option(), p.dynamoDBOption), tables, 0)

	th := attribution.DefaultThresholds()
	s := Series{Attacker: 0, Primitive: 0}
	key := w.Key(s)
	obs := w.Observation(s, 1)
	rec := attribution.NewSeriesRecord(key, catalogue[0].Kind, th)
	rec.Series.Add(obs.Point())
	if _, err := rec.Settle(rec.Series.State(th), obs.AttackerUUID); err != nil {
		t.Fatal(err)
	}
	ident := &attribution.IdentityRecord{IdentityUUID: key.IdentityUUID, Flagged: []string{key.Primitive}}
	c := &attribution.Commit{
		Observations: []attribution.ObservationWrite{{Key: key, Observation: obs, Revision: 1}},
		Series:       []*attribution.SeriesRecord{rec},
		Identity:     ident,
	}
	if err := store.Commit(ctx, c); err != nil {
		t.Fatal(err)
	}
	// Observation, record and identity record, each within 1 KB, written
	// transactionally: 2 units each.
	if got := meter.Snapshot().Total.WCU; got != 6 {
		t.Errorf("the meter counted %v write units, want 6", got)
	}
	if wcu, writes := p.identityRecords(); wcu != 2 || writes != 1 {
		t.Errorf("identity records: %v write units in %d writes, want 2 in 1", wcu, writes)
	}
	written := p.writtenObservations()
	if len(written) != 1 || written[0].events || written[0].primitive != key.Primitive {
		t.Fatalf("written observations %+v, want one of %s without events", written, key.Primitive)
	}
	stored, err := dynamodb.NewFromConfig(srv.Config()).GetItem(ctx, &dynamodb.GetItemInput{
		TableName: &tables.Observations, Key: observationKey(key, obs.EvidenceRef), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	if size := itemsize.Item(stored.Item); written[0].size != size {
		t.Errorf("written observation of %d bytes, stored %d", written[0].size, size)
	}

	// A commit without the identity record costs none of it.
	p.reset()
	obs2 := w.Observation(s, 2)
	rec.Version++
	rec.Series.Add(obs2.Point())
	rec.Transition(rec.Series.State(th), obs2.AttackerUUID)
	if err := store.Commit(ctx, &attribution.Commit{
		Observations: []attribution.ObservationWrite{{Key: key, Observation: obs2}},
		Series:       []*attribution.SeriesRecord{rec},
	}); err != nil {
		t.Fatal(err)
	}
	if wcu, writes := p.identityRecords(); wcu != 0 || writes != 0 {
		t.Errorf("identity records: %v write units in %d writes, want none", wcu, writes)
	}
	if err := p.sizingErr(); err != nil {
		t.Error(err)
	}
}
