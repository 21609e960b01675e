package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/smithy-go/middleware"
)

// capacityMeterID is the ID of the capacity meter's middleware, which a
// paused probe takes off the stack.
const capacityMeterID = "CapacityMeter"

// probe is SDK middleware beside the capacity meter. It attributes each
// DynamoDB request to the identity it serves (so the longest sequence of
// requests one identity's observations wait on is known), counts
// EventBridge entries, and, while paused, takes the meter off the
// requests so that timed batches do not pay for the meter's side reads.
type probe struct {
	paused atomic.Bool
	// identities maps every string that names an identity in a request
	// (identity UUID, attacker UUID) to the identity.
	identities map[string]string

	mu       sync.Mutex
	requests map[string]int // DynamoDB requests by identity ("" unknown)
	ebCalls  map[string]int // PutEvents calls by identity
	entries  int            // EventBridge entries
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
	p.requests = map[string]int{}
	p.ebCalls = map[string]int{}
	p.entries = 0
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
				p.mu.Lock()
				p.requests[id]++
				p.mu.Unlock()
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

// counts returns the DynamoDB requests of the identity that made the most,
// the requests no identity could be found for, the PutEvents calls of the
// identity that made the most, and the EventBridge entries.
func (p *probe) counts() (critical, unattributed, ebCritical, entries int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, n := range p.requests {
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
