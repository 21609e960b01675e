package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/smithy-go/middleware"

	"decnet-attribution/internal/itemsize"
	"decnet-attribution/internal/testrig/capacity"
)

// capacityMeterID is the ID of the capacity meter's middleware, which a
// paused probe takes off the stack.
const capacityMeterID = "CapacityMeter"

// probe is SDK middleware beside the capacity meter. It attributes each
// DynamoDB request to the identity it serves (so the round trips one
// identity's observations wait on are known), counts
// EventBridge entries, and, while paused, takes the meter off the
// requests so that timed batches do not pay for the meter's side reads.
//
// Once given the tables and an un-metered client (sizeWrites), it also
// measures two parts of the transactions the meter only counts as a
// whole: the write units spent on identity records (the states table's
// items whose sort key is identityItem), computed by the meter's rules
// from the items' sizes before and after; and the observation items
// written, with their sizes and whether they carry events.
type probe struct {
	paused atomic.Bool
	// identities maps every string that names an identity in a request
	// (identity UUID, attacker UUID) to the identity.
	identities map[string]string

	// side reads the items whose size the write accounting needs; nil
	// turns the accounting off.
	side                 itemReader
	states, observations string

	mu sync.Mutex
	// rounds counts, by identity ("" unknown), the DynamoDB round trips its
	// observations waited on: a run of writes of one kind (the processor
	// sends the commits of several series, or the items they let go of, in
	// parallel) is one round; every read is one.
	rounds  map[string]int
	last    map[string]string // the write kind of the identity's latest request ("" a read)
	ebCalls map[string]int    // PutEvents calls by identity
	entries int               // EventBridge entries
	// identityHalves are the half write units spent on identity records
	// since the last reset, identityWrites the identity-record writes of
	// committed transactions.
	identityHalves int64
	identityWrites int
	sizeErr        error // first failed side read since the last reset
	// written are the observation items of committed transactions since
	// the probe was made (reset keeps them).
	written []writtenObservation
}

// writeKind names the parallel fan-out a write belongs to: the commits of
// series records (alone or in transactions), or the observation items
// written after them; "" for a read.
func writeKind(params any) string {
	switch params.(type) {
	case *dynamodb.UpdateItemInput, *dynamodb.TransactWriteItemsInput:
		return "commit"
	case *dynamodb.PutItemInput:
		return "items"
	}
	return ""
}

// itemReader is the part of a DynamoDB client the write accounting reads
// items through. It must not be metered.
type itemReader interface {
	GetItem(ctx context.Context, params *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
}

// writtenObservation is one observation item a committed transaction put.
type writtenObservation struct {
	primitive string
	size      int  // bytes, as DynamoDB counts them
	events    bool // it carries the events it caused (attrEvents)
}

// identityItem is the sort key of an identity's record in the states
// table (the store's; primitive names cannot start with '#').
const identityItem = "#identity"

// attrEvents is the observation item's attribute holding the events it
// caused (the store's).
const attrEvents = "ev"

// sizeWrites turns on the write accounting: side must be a client the
// meter and the probe are not attached to.
func (p *probe) sizeWrites(side itemReader, states, observations string) {
	p.side, p.states, p.observations = side, states, observations
}

func newProbe() *probe {
	p := &probe{identities: map[string]string{}}
	p.reset()
	return p
}

// know registers an attacker and its identity.
func (p *probe) know(attacker, identity string) {
	p.identities[attacker] = identity
	p.identities[identity] = identity
}

func (p *probe) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rounds, p.last = map[string]int{}, map[string]string{}
	p.ebCalls = map[string]int{}
	p.entries = 0
	p.identityHalves, p.identityWrites, p.sizeErr = 0, 0, nil
}

// dynamoDBOption must come after the meter's option.
func (p *probe) dynamoDBOption(o *dynamodb.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		if p.paused.Load() {
			if _, err := stack.Initialize.Remove(capacityMeterID); err != nil {
				return fmt.Errorf("pause capacity meter: %w", err)
			}
			return nil
		}
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("BenchProbe",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				id := p.identityOf(in.Parameters)
				kind := writeKind(in.Parameters)
				p.mu.Lock()
				if kind == "" || kind != p.last[id] {
					p.rounds[id]++
				}
				p.last[id] = kind
				p.mu.Unlock()
				if tx, ok := in.Parameters.(*dynamodb.TransactWriteItemsInput); ok && p.side != nil {
					return p.accountTransaction(ctx, tx, func() (middleware.InitializeOutput, middleware.Metadata, error) {
						return next.HandleInitialize(ctx, in)
					})
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
}

func (p *probe) eventBridgeOption(o *eventbridge.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("BenchProbe",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if put, ok := in.Parameters.(*eventbridge.PutEventsInput); ok && !p.paused.Load() {
					id := ""
					for _, e := range put.Entries {
						var d struct {
							IdentityUUID string `json:"identity_uuid"`
						}
						if e.Detail != nil && json.Unmarshal([]byte(*e.Detail), &d) == nil && d.IdentityUUID != "" {
							id = d.IdentityUUID
						}
					}
					p.mu.Lock()
					p.ebCalls[id]++
					p.entries += len(put.Entries)
					p.mu.Unlock()
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
}

// identityRecords returns the write units spent on identity records since
// the last reset and the identity-record writes of committed
// transactions.
func (p *probe) identityRecords() (wcu float64, writes int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return float64(p.identityHalves) / 2, p.identityWrites
}

// writtenObservations returns the observation items committed since the
// probe was made.
func (p *probe) writtenObservations() []writtenObservation {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]writtenObservation(nil), p.written...)
}

// identityAction is one action of a transaction on an identity record,
// with the item's size before the transaction.
type identityAction struct {
	index   int
	key     map[string]types.AttributeValue
	kind    string // "Put", "Update" or "Delete"
	oldSize int
	newSize int // Put only
}

// accountTransaction runs one TransactWriteItems (do) and adds the write
// units its identity-record actions cost, by the capacity meter's rules
// (internal/testrig/capacity): committed, each action is twice the write units
// of the larger of the item before and after; cancelled by a failed
// condition, once those of the item as it stands; otherwise nothing. The
// observation items of a committed transaction are recorded.
func (p *probe) accountTransaction(ctx context.Context, in *dynamodb.TransactWriteItemsInput, do func() (middleware.InitializeOutput, middleware.Metadata, error)) (middleware.InitializeOutput, middleware.Metadata, error) {
	side := context.WithoutCancel(ctx)
	var acts []identityAction
	for i, a := range in.TransactItems {
		var act identityAction
		var table string
		switch {
		case a.Put != nil:
			table, act = aws.ToString(a.Put.TableName), identityAction{kind: "Put", newSize: itemsize.Item(a.Put.Item)}
			act.key = map[string]types.AttributeValue{attrIdentity: a.Put.Item[attrIdentity], attrPrimitive: a.Put.Item[attrPrimitive]}
		case a.Update != nil:
			table, act = aws.ToString(a.Update.TableName), identityAction{kind: "Update", key: a.Update.Key}
		case a.Delete != nil:
			table, act = aws.ToString(a.Delete.TableName), identityAction{kind: "Delete", key: a.Delete.Key}
		default:
			continue
		}
		if table != p.states {
			continue
		}
		if sk, ok := act.key[attrPrimitive].(*types.AttributeValueMemberS); !ok || sk.Value != identityItem {
			continue
		}
		act.index = i
		size, err := p.storedSize(side, act.key)
		if err != nil {
			p.fail(err)
		}
		act.oldSize = size
		acts = append(acts, act)
	}
	out, md, err := do()
	var halves int64
	var canceled *types.TransactionCanceledException
	switch {
	case err == nil:
		for _, a := range acts {
			size := a.oldSize
			switch a.kind {
			case "Put":
				size = max(size, a.newSize)
			case "Update":
				after, serr := p.storedSize(side, a.key)
				if serr != nil {
					p.fail(serr)
				}
				size = max(size, after)
			}
			halves += 2 * 2 * int64(capacity.WriteUnits(size))
		}
		var obs []writtenObservation
		for _, a := range in.TransactItems {
			if a.Put == nil || aws.ToString(a.Put.TableName) != p.observations {
				continue
			}
			w := writtenObservation{size: itemsize.Item(a.Put.Item)}
			_, w.events = a.Put.Item[attrEvents]
			if s, ok := a.Put.Item[attrSeries].(*types.AttributeValueMemberS); ok {
				_, w.primitive, _ = strings.Cut(s.Value, "|")
			}
			obs = append(obs, w)
		}
		p.mu.Lock()
		p.identityHalves += halves
		p.identityWrites += len(acts)
		p.written = append(p.written, obs...)
		p.mu.Unlock()
	case errors.As(err, &canceled) && conditionFailed(canceled):
		for _, a := range acts {
			size := a.oldSize
			if a.index < len(canceled.CancellationReasons) && canceled.CancellationReasons[a.index].Item != nil {
				size = itemsize.Item(canceled.CancellationReasons[a.index].Item)
			}
			halves += 2 * int64(capacity.WriteUnits(size))
		}
		p.mu.Lock()
		p.identityHalves += halves
		p.mu.Unlock()
	}
	return out, md, err
}

// fail records an error of the write accounting (the request itself goes
// on); the next sizingErr reports it.
func (p *probe) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sizeErr == nil {
		p.sizeErr = err
	}
}

// sizingErr returns the first error of the write accounting since the
// last reset: its figures are then a lower bound.
func (p *probe) sizingErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sizeErr
}

// storedSize is the size of the stored states item at key, 0 if there is
// none.
func (p *probe) storedSize(ctx context.Context, key map[string]types.AttributeValue) (int, error) {
	out, err := p.side.GetItem(ctx, &dynamodb.GetItemInput{TableName: &p.states, Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return 0, fmt.Errorf("size identity record: %w", err)
	}
	return itemsize.Item(out.Item), nil
}

func conditionFailed(e *types.TransactionCanceledException) bool {
	for _, r := range e.CancellationReasons {
		if aws.ToString(r.Code) == "ConditionalCheckFailed" {
			return true
		}
	}
	return false
}

// counts returns the DynamoDB round trips of the identity that waited on
// the most, the rounds no identity could be found for, the PutEvents calls
// of the identity that made the most, and the EventBridge entries.
func (p *probe) counts() (critical, unattributed, ebCritical, entries int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, n := range p.rounds {
		if id == "" {
			unattributed = n
			continue
		}
		critical = max(critical, n)
	}
	for _, n := range p.ebCalls {
		ebCritical = max(ebCritical, n)
	}
	return critical, unattributed, ebCritical, p.entries
}

// identityOf finds the identity a DynamoDB request serves from the string
// values of its keys, items and expression values.
func (p *probe) identityOf(params any) string {
	var found string
	look := func(values ...map[string]types.AttributeValue) {
		for _, m := range values {
			for _, v := range m {
				s, ok := v.(*types.AttributeValueMemberS)
				if !ok || found != "" {
					continue
				}
				if id, ok := p.identities[s.Value]; ok {
					found = id
				} else if prefix, _, ok := strings.Cut(s.Value, "|"); ok && p.identities[prefix] != "" {
					found = p.identities[prefix]
				}
			}
		}
	}
	switch in := params.(type) {
	case *dynamodb.GetItemInput:
		look(in.Key)
	case *dynamodb.PutItemInput:
		look(in.Item)
	case *dynamodb.UpdateItemInput:
		look(in.Key)
	case *dynamodb.DeleteItemInput:
		look(in.Key)
	case *dynamodb.QueryInput:
		look(in.ExpressionAttributeValues)
	case *dynamodb.BatchGetItemInput:
		for _, ka := range in.RequestItems {
			look(ka.Keys...)
		}
	case *dynamodb.TransactWriteItemsInput:
		for _, a := range in.TransactItems {
			switch {
			case a.Put != nil:
				look(a.Put.Item)
			case a.Update != nil:
				look(a.Update.Key)
			case a.Delete != nil:
				look(a.Delete.Key)
			case a.ConditionCheck != nil:
				look(a.ConditionCheck.Key)
			}
		}
	}
	return found
}
