package faultproxy

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Service names an AWS service the injector recognises.
type Service string

// Services recognised from the X-Amz-Target header.
const (
	DynamoDB    Service = "dynamodb"
	EventBridge Service = "eventbridge"
	SQS         Service = "sqs"
)

// targetPrefixes maps the X-Amz-Target prefix of each JSON protocol to its
// service.
var targetPrefixes = map[string]Service{
	"DynamoDB_20120810": DynamoDB,
	"AWSEvents":         EventBridge,
	"AmazonSQS":         SQS,
}

// Op identifies one operation of one service, such as {DynamoDB, "PutItem"}.
// Requests the injector does not recognise have an empty Service and the raw
// X-Amz-Target value (possibly empty) as Name.
type Op struct {
	Service Service
	Name    string
}

func (o Op) String() string {
	if o.Service == "" {
		return "unrecognised:" + o.Name
	}
	return string(o.Service) + "." + o.Name
}

// opFromTarget classifies a request by its X-Amz-Target header.
func opFromTarget(target string) Op {
	prefix, name, ok := strings.Cut(target, ".")
	if svc, known := targetPrefixes[prefix]; ok && known && name != "" {
		return Op{Service: svc, Name: name}
	}
	return Op{Name: target}
}

// putEvents is the operation whose entries FailEntry applies to.
var putEvents = Op{Service: EventBridge, Name: "PutEvents"}

// Rule sets fault rates for one service, or for one operation of it.
//
// For a request, the rule with the request's Service and Operation applies;
// failing that, the rule with its Service and an empty Operation; failing
// that, none. A rule for an operation replaces the service-wide rule entirely
// for that operation; the two are not merged.
//
// Every rate lies in [0, 1]. The whole-request rates (DropBeforeForward,
// Throttle, ProvisionedThroughputExceeded, InternalError, DropAfterForward)
// exclude each other and add up to at most 1.
type Rule struct {
	Service   Service
	Operation string // empty: every operation of Service

	DropBeforeForward             float64
	Throttle                      float64
	ProvisionedThroughputExceeded float64 // DynamoDB only
	InternalError                 float64
	DropAfterForward              float64

	Delay         float64       // independent of the faults above
	DelayDuration time.Duration // how long a delayed request waits

	FailEntry float64 // EventBridge PutEvents only: rate per entry
}

// ErrInvalidRule is wrapped by the errors of New and SetRules for rules
// that cannot be applied.
var ErrInvalidRule = errors.New("invalid fault rule")

func (r Rule) op() Op { return Op{Service: r.Service, Name: r.Operation} }

func (r Rule) validate() error {
	switch r.Service {
	case DynamoDB, EventBridge, SQS:
	default:
		return fmt.Errorf("%w: unknown service %q", ErrInvalidRule, r.Service)
	}
	rates := []struct {
		name string
		v    float64
	}{
		{"DropBeforeForward", r.DropBeforeForward},
		{"Throttle", r.Throttle},
		{"ProvisionedThroughputExceeded", r.ProvisionedThroughputExceeded},
		{"InternalError", r.InternalError},
		{"DropAfterForward", r.DropAfterForward},
		{"Delay", r.Delay},
		{"FailEntry", r.FailEntry},
	}
	for _, rate := range rates {
		if math.IsNaN(rate.v) || rate.v < 0 || rate.v > 1 {
			return fmt.Errorf("%w: %s: %s rate %v outside [0, 1]", ErrInvalidRule, r.op(), rate.name, rate.v)
		}
	}
	if sum := r.exclusiveSum(); sum > 1+1e-9 {
		return fmt.Errorf("%w: %s: whole-request fault rates add up to %v, more than 1", ErrInvalidRule, r.op(), sum)
	}
	if r.ProvisionedThroughputExceeded > 0 && r.Service != DynamoDB {
		return fmt.Errorf("%w: %s: ProvisionedThroughputExceeded applies to DynamoDB only", ErrInvalidRule, r.op())
	}
	if r.FailEntry > 0 && (r.Service != EventBridge || (r.Operation != "" && r.Operation != putEvents.Name)) {
		return fmt.Errorf("%w: %s: FailEntry applies to EventBridge PutEvents only", ErrInvalidRule, r.op())
	}
	if r.Delay > 0 && r.DelayDuration <= 0 {
		return fmt.Errorf("%w: %s: Delay rate set without a positive DelayDuration", ErrInvalidRule, r.op())
	}
	return nil
}

func (r Rule) exclusiveSum() float64 {
	return r.DropBeforeForward + r.Throttle + r.ProvisionedThroughputExceeded + r.InternalError + r.DropAfterForward
}

// pick chooses the whole-request fault for a uniform draw u in [0, 1).
func (r Rule) pick(u float64) Fault {
	for _, c := range []struct {
		rate  float64
		fault Fault
	}{
		{r.DropBeforeForward, FaultDropBeforeForward},
		{r.Throttle, FaultThrottle},
		{r.ProvisionedThroughputExceeded, FaultProvisionedThroughputExceeded},
		{r.InternalError, FaultInternalError},
		{r.DropAfterForward, FaultDropAfterForward},
	} {
		if u < c.rate {
			return c.fault
		}
		u -= c.rate
	}
	return faultNone
}

// ruleSet is an immutable, validated set of rules indexed by operation.
type ruleSet map[Op]Rule

func newRuleSet(rules []Rule) (ruleSet, error) {
	set := make(ruleSet, len(rules))
	for _, r := range rules {
		if err := r.validate(); err != nil {
			return nil, err
		}
		if _, dup := set[r.op()]; dup {
			return nil, fmt.Errorf("%w: %s: more than one rule", ErrInvalidRule, r.op())
		}
		set[r.op()] = r
	}
	return set, nil
}

// match returns the rule for op, or the zero Rule (no faults).
func (s ruleSet) match(op Op) Rule {
	if op.Service == "" {
		return Rule{}
	}
	if r, ok := s[op]; ok {
		return r
	}
	return s[Op{Service: op.Service}]
}
