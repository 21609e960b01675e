package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
)

// HistoryLoader stores prior history directly, without the handler: the
// identities of a workload's attackers, the series records built from
// whole series, and the observation items themselves.
type HistoryLoader struct {
	Client     *dynamodb.Client // not metered
	Tables     ddbstore.Tables
	Registry   attribution.Registry
	Thresholds attribution.Thresholds
	// ObservationTTL is the store's TTL (it adds expires_at to items).
	ObservationTTL time.Duration
	// Inline stores records as the incremental design leaves them.
	Inline bool
}

// Load stores sessions 1..h of each series of w, as the design under test
// would have left them: the attacker's identity (as a first sighting
// stores it) and the series record built from all h points with
// attribution.NewSeries, in the state those points give and with no events
// of its own (the history's events went out long ago). With Inline, the
// record holds the newest observations inline, as the incremental design
// leaves them, and the rest are observation items; without, the record
// holds none, and the series in withItems get their h items. Items are
// encoded by ddbstore.Store.Commit and written with BatchWriteItem
// (history is not the traffic being measured, and writing it through
// transactions is slow on a local emulator). No identity record is
// stored, which stands for an empty flagged set: Load fails if a history
// series ends in multi_actor. A history of 0 stores no record.
func (l *HistoryLoader) Load(ctx context.Context, w Workload, series []Series, h int, withItems map[Series]bool) error {
	store := ddbstore.New(l.Client, l.Tables, l.ObservationTTL)
	bulk := ddbstore.New(bulkClient{l.Client}, l.Tables, l.ObservationTTL)
	attackers := map[int]bool{}
	for _, s := range series {
		if attackers[s.Attacker] {
			continue
		}
		attackers[s.Attacker] = true
		if _, err := store.Identity(ctx, w.Attacker(s.Attacker), w.Identity(s.Attacker)); err != nil {
			return err
		}
	}
	if h == 0 {
		return nil
	}
	var records []*attribution.SeriesRecord
	items := map[attribution.SeriesKey][]attribution.Observation{}
	for _, s := range series {
		key := w.Key(s)
		obs := w.History(s, h)
		kind := l.Registry.Kind(key.Primitive)
		points := make([]attribution.Point, len(obs))
		for i, o := range obs {
			points[i] = o.Point()
		}
		rec := attribution.NewSeriesRecord(key, kind, l.Thresholds)
		rec.Series = attribution.NewSeries(kind, points, l.Thresholds)
		// The history's events were published long ago: none is kept.
		rec.Transition(rec.Series.State(l.Thresholds), w.Attacker(s.Attacker))
		if rec.Current.State == attribution.StateMultiActor {
			return fmt.Errorf("history of %s ends in %s, which the identity record would have to list; the loader stores none", key, attribution.StateMultiActor)
		}
		switch {
		case l.Inline:
			// The observations past the record's budget are items; they
			// are written only where a design reads them.
			spilled := rec.HoldSeries(obs)
			if withItems[s] {
				items[key] = spilled
			}
		case withItems[s]:
			rec.Complete = false
			items[key] = obs
		default:
			rec.Complete = false
		}
		records = append(records, rec)
	}
	if err := l.loadItems(ctx, bulk, items); err != nil {
		return err
	}
	for start := 0; start < len(records); start += attribution.MaxCommitItems {
		c := &attribution.Commit{Series: records[start:min(len(records), start+attribution.MaxCommitItems)]}
		if err := store.Commit(ctx, c); err != nil {
			return fmt.Errorf("history records: %w", err)
		}
	}
	return nil
}

// loadWorkers write observation items concurrently: the emulator is
// mostly busy with one request while the next is being encoded.
const loadWorkers = 4

// loadItems writes the observation items of each series.
func (l *HistoryLoader) loadItems(ctx context.Context, bulk *ddbstore.Store, items map[attribution.SeriesKey][]attribution.Observation) error {
	work := make(chan attribution.SeriesKey)
	errs := make(chan error, loadWorkers)
	var wg sync.WaitGroup
	for range loadWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range work {
				obs := items[key]
				for start := 0; start < len(obs); start += attribution.MaxCommitItems {
					c := &attribution.Commit{}
					for _, o := range obs[start:min(len(obs), start+attribution.MaxCommitItems)] {
						c.Observations = append(c.Observations, attribution.ObservationWrite{Key: key, Observation: o, Revision: 1})
					}
					if err := bulk.Commit(ctx, c); err != nil {
						errs <- fmt.Errorf("history of %s: %w", key, err)
						return
					}
				}
			}
		}()
	}
	var err error
feed:
	for key, obs := range items {
		if len(obs) == 0 {
			continue
		}
		select {
		case work <- key:
		case err = <-errs:
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err != nil {
		return err
	}
	select {
	case err = <-errs:
		return err
	default:
		return nil
	}
}

// bulkClient is a ddbstore.Client that writes a transaction made only of
// puts as unconditional BatchWriteItem requests: the items are exactly
// those the store encodes, without the transaction.
type bulkClient struct {
	*dynamodb.Client
}

// batchWriteLimit is the most requests one BatchWriteItem takes.
const batchWriteLimit = 25

func (c bulkClient) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	var puts []*types.Put
	for _, a := range in.TransactItems {
		if a.Put == nil {
			return c.Client.TransactWriteItems(ctx, in, opts...)
		}
		puts = append(puts, a.Put)
	}
	for start := 0; start < len(puts); start += batchWriteLimit {
		request := map[string][]types.WriteRequest{}
		for _, p := range puts[start:min(len(puts), start+batchWriteLimit)] {
			request[*p.TableName] = append(request[*p.TableName], types.WriteRequest{PutRequest: &types.PutRequest{Item: p.Item}})
		}
		for attempt := 0; len(request) > 0; attempt++ {
			if attempt > 10 {
				return nil, fmt.Errorf("batch write: items still unprocessed after %d attempts", attempt)
			}
			out, err := c.Client.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: request}, opts...)
			if err != nil {
				return nil, fmt.Errorf("batch write: %w", err)
			}
			request = out.UnprocessedItems
		}
	}
	return &dynamodb.TransactWriteItemsOutput{}, nil
}

// Key attributes of the tables (the shared table contract).
const (
	attrIdentity    = "identity_uuid"
	attrPrimitive   = "primitive"
	attrSeries      = "series"
	attrEvidenceRef = "evidence_ref"
)

func stateKey(k attribution.SeriesKey) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrIdentity:  &types.AttributeValueMemberS{Value: k.IdentityUUID},
		attrPrimitive: &types.AttributeValueMemberS{Value: k.Primitive},
	}
}

func observationKey(k attribution.SeriesKey, ref string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrSeries:      &types.AttributeValueMemberS{Value: k.String()},
		attrEvidenceRef: &types.AttributeValueMemberS{Value: ref},
	}
}
