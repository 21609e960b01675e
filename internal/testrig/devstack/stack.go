package devstack

import (
	"sort"
	"strings"
	"time"
)

// Logical IDs of the template's resources that the tooling addresses by
// name (the project's resource contract).
const (
	IdentitiesTableID            = "IdentitiesTable"
	ObservationsTableID          = "ObservationsTable"
	StatesTableID                = "StatesTable"
	ObservationQueueID           = "ObservationQueue"
	ObservationDeadLetterQueueID = "ObservationDeadLetterQueue"
	AlertRuleDeadLetterQueueID   = "AlertRuleDeadLetterQueue"
	AttributionBusID             = "AttributionBus"
	AlertRuleID                  = "AlertRule"
	AttributionFunctionID        = "AttributionFunction"
	// With PublishBackToDecnet=true only.
	PublishBackQueueID = "PublishBackQueue"
)

// Local credentials and account, accepted by moto.
const (
	DefaultRegion    = "us-east-1"
	DefaultAccountID = "123456789012"
	AccessKeyID      = "test"
	SecretAccessKey  = "test"
)

// Stack is what Provision created: the physical identifiers of the
// template's resources, keyed by logical ID, and the function's
// configuration resolved from the template.
type Stack struct {
	Name      string // AWS::StackName
	Region    string
	AccountID string
	// Endpoint is the AWS endpoint the resources live behind (moto's URL).
	Endpoint string
	// Resources holds every resource of the template whose condition holds,
	// provisioned or not (see Resource.Provisioned).
	Resources map[string]Resource
	// AlertsQueue is a local SQS queue that every rule of the template with
	// an SNS target also delivers to. It stands in for the SNS topic (whose e-mail delivery
	// cannot be observed locally): tests and tools read alerts from it.
	AlertsQueue Resource
	// Function is the template's Lambda function (not created: run it with
	// the Runtime Interface Emulator, see StartEmulator).
	Function Function
	// Notes lists, one line each, what was not created locally or not
	// applied, and why.
	Notes []string
}

// Resource is one resource of a stack.
type Resource struct {
	LogicalID string
	Type      string
	// Provisioned is false for resources that were not created locally;
	// their identifiers are the ones CloudFormation would give them, so
	// references to them still resolve.
	Provisioned bool
	// Ref is what the template's Ref returns: a table's or bus's name, a
	// queue's URL, a topic's ARN.
	Ref  string
	Name string
	ARN  string
	URL  string // queues only
	// Attributes holds the values Fn::GetAtt returns (Arn, QueueUrl, ...).
	Attributes map[string]string
}

// Function is a Lambda function of the template, resolved.
type Function struct {
	LogicalID string
	Name      string
	// Environment is the function's Environment.Variables (merged with the
	// SAM Globals), resolved: exactly what Lambda would give the function.
	Environment map[string]string
	Timeout     time.Duration
	MemorySize  int
	// RuntimeEnv holds the AWS_LAMBDA_* variables the Lambda platform sets
	// from the function's configuration (name, timeout, memory, log format
	// and level). The Runtime Interface Emulator honours the timeout.
	RuntimeEnv map[string]string
	// EventSources are the function's SQS event sources.
	EventSources []EventSource
}

// EventSource is an SQS event source of the function (a SAM Events entry of
// type SQS).
type EventSource struct {
	Name                  string
	QueueLogicalID        string
	QueueURL              string
	QueueARN              string
	BatchSize             int
	MaximumBatchingWindow time.Duration
	MaximumConcurrency    int // 0: unbounded
	FunctionResponseTypes []string
}

// TableName returns the physical name of the table with the given logical
// ID, or "" if the stack has none.
func (s *Stack) TableName(logicalID string) string {
	return s.Resources[logicalID].Name
}

// QueueURL returns the URL of the queue with the given logical ID, or "".
func (s *Stack) QueueURL(logicalID string) string {
	return s.Resources[logicalID].URL
}

// ARN returns the ARN of the resource with the given logical ID, or "".
func (s *Stack) ARN(logicalID string) string {
	return s.Resources[logicalID].ARN
}

// BusName returns the name of the event bus with the given logical ID, or "".
func (s *Stack) BusName(logicalID string) string {
	return s.Resources[logicalID].Name
}

// EnvMap returns the variables of Env as a map.
func (s *Stack) EnvMap() map[string]string {
	env := map[string]string{
		"AWS_ENDPOINT_URL":      s.Endpoint,
		"AWS_REGION":            s.Region,
		"AWS_DEFAULT_REGION":    s.Region,
		"AWS_ACCESS_KEY_ID":     AccessKeyID,
		"AWS_SECRET_ACCESS_KEY": SecretAccessKey,
		"ALERTS_QUEUE_URL":      s.AlertsQueue.URL,
	}
	named := map[string]string{
		"IDENTITIES_TABLE":       s.TableName(IdentitiesTableID),
		"OBSERVATIONS_TABLE":     s.TableName(ObservationsTableID),
		"STATES_TABLE":           s.TableName(StatesTableID),
		"OBSERVATION_QUEUE_URL":  s.QueueURL(ObservationQueueID),
		"DLQ_URL":                s.QueueURL(ObservationDeadLetterQueueID),
		"ALERT_RULE_DLQ_URL":     s.QueueURL(AlertRuleDeadLetterQueueID),
		"EVENT_BUS_NAME":         s.BusName(AttributionBusID),
		"PUBLISH_BACK_QUEUE_URL": s.QueueURL(PublishBackQueueID),
	}
	for k, v := range named {
		if v != "" {
			env[k] = v
		}
	}
	// The function's own environment, as the template declares it, wins,
	// except where it declares a variable empty for the local run to fill
	// (AWS_ENDPOINT_URL: empty on Lambda, where the SDK ignores it).
	for k, v := range s.Function.Environment {
		if v != "" || env[k] == "" {
			env[k] = v
		}
	}
	return env
}

// Env returns KEY=value pairs, sorted by key, to run the function or a tool
// against the stack: the endpoint, region and local credentials; the
// tables, queues (OBSERVATION_QUEUE_URL, DLQ_URL, ALERT_RULE_DLQ_URL,
// ALERTS_QUEUE_URL, PUBLISH_BACK_QUEUE_URL when the stack has one) and bus; and the function's environment from the
// template.
func (s *Stack) Env() []string {
	return pairs(s.EnvMap())
}

// LambdaEnv returns Env plus the function's RuntimeEnv: the environment of
// the function process under the Runtime Interface Emulator.
func (s *Stack) LambdaEnv() []string {
	env := s.EnvMap()
	for k, v := range s.Function.RuntimeEnv {
		env[k] = v
	}
	return pairs(env)
}

func pairs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// ParseEnv turns KEY=value lines into a map, ignoring blank lines and
// comments.
func ParseEnv(lines []string) map[string]string {
	m := map[string]string{}
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}
