package devstack

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// DynamoDBAPI is the part of the DynamoDB client Provision uses.
type DynamoDBAPI interface {
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
	UpdateContinuousBackups(ctx context.Context, in *dynamodb.UpdateContinuousBackupsInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateContinuousBackupsOutput, error)
}

// SQSAPI is the part of the SQS client Provision uses.
type SQSAPI interface {
	CreateQueue(ctx context.Context, in *sqs.CreateQueueInput, opts ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// EventBridgeAPI is the part of the EventBridge client Provision uses.
type EventBridgeAPI interface {
	CreateEventBus(ctx context.Context, in *eventbridge.CreateEventBusInput, opts ...func(*eventbridge.Options)) (*eventbridge.CreateEventBusOutput, error)
	DescribeEventBus(ctx context.Context, in *eventbridge.DescribeEventBusInput, opts ...func(*eventbridge.Options)) (*eventbridge.DescribeEventBusOutput, error)
	PutRule(ctx context.Context, in *eventbridge.PutRuleInput, opts ...func(*eventbridge.Options)) (*eventbridge.PutRuleOutput, error)
	PutTargets(ctx context.Context, in *eventbridge.PutTargetsInput, opts ...func(*eventbridge.Options)) (*eventbridge.PutTargetsOutput, error)
}

var (
	_ DynamoDBAPI    = (*dynamodb.Client)(nil)
	_ SQSAPI         = (*sqs.Client)(nil)
	_ EventBridgeAPI = (*eventbridge.Client)(nil)
)

// Clients are the AWS clients Provision creates resources with.
type Clients struct {
	DynamoDB    DynamoDBAPI
	SQS         SQSAPI
	EventBridge EventBridgeAPI
}

// NewClients builds the clients from cfg (whose BaseEndpoint points at the
// local endpoint).
func NewClients(cfg aws.Config) Clients {
	return Clients{
		DynamoDB:    dynamodb.NewFromConfig(cfg),
		SQS:         sqs.NewFromConfig(cfg),
		EventBridge: eventbridge.NewFromConfig(cfg),
	}
}

// Options tune Provision.
type Options struct {
	// StackName is AWS::StackName; generated physical names start with it,
	// so distinct stack names give distinct resources on one endpoint.
	// Default "decnet-attribution".
	StackName string
	// Region and AccountID are the pseudo parameters. Defaults us-east-1
	// and 123456789012 (moto's account).
	Region    string
	AccountID string
	// Parameters override the template's parameter defaults.
	Parameters map[string]string
	// Endpoint is recorded in the Stack (AWS_ENDPOINT_URL of Stack.Env).
	Endpoint string
	// FunctionID is the logical ID of the function whose configuration the
	// Stack carries. Default AttributionFunction, or the template's only
	// function.
	FunctionID string
}

// DefaultStackName is the stack name Provision uses when none is given.
const DefaultStackName = "decnet-attribution"

// Provision creates the template's DynamoDB tables, SQS queues, EventBridge
// buses and rules through clients, from the template's own definitions, and
// returns their identifiers. It also creates a local alerts queue, added as
// a target of every rule with a target moto cannot deliver to: it stands in
// for the rule's SNS topic.
//
// Resource types that need no local counterpart (functions, IAM, alarms,
// policies, log groups, SNS) are not created; each gets one line in
// Stack.Notes and identifiers shaped like CloudFormation's, so references to
// them still resolve. Resources that already exist under the same name are
// reused, so provisioning one stack name twice is harmless.
func Provision(ctx context.Context, clients Clients, tmpl *Template, opts Options) (*Stack, error) {
	if opts.StackName == "" {
		opts.StackName = DefaultStackName
	}
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	if opts.AccountID == "" {
		opts.AccountID = DefaultAccountID
	}
	pseudo := map[string]any{
		"AWS::Region":           opts.Region,
		"AWS::AccountId":        opts.AccountID,
		"AWS::StackName":        opts.StackName,
		"AWS::StackId":          fmt.Sprintf("arn:aws:cloudformation:%s:%s:stack/%s/local", opts.Region, opts.AccountID, opts.StackName),
		"AWS::Partition":        "aws",
		"AWS::URLSuffix":        "amazonaws.com",
		"AWS::NotificationARNs": []any{},
	}
	p := &provisioner{
		ctx:     ctx,
		clients: clients,
		tmpl:    tmpl,
		opts:    opts,
		state:   map[string]int{},
		stack: &Stack{
			Name:      opts.StackName,
			Region:    opts.Region,
			AccountID: opts.AccountID,
			Endpoint:  opts.Endpoint,
			Resources: map[string]Resource{},
		},
	}
	ref := func(id string) (string, error) {
		r, err := p.ensure(id)
		return r.Ref, err
	}
	var err error
	if p.eval, err = newEvaluator(tmpl, opts.Parameters, pseudo, ref, p.getAtt); err != nil {
		return nil, err
	}

	alerts, err := p.createQueue("LocalAlertsQueue", p.name("local-alerts", "", 80), nil)
	if err != nil {
		return nil, fmt.Errorf("create local alerts queue: %w", err)
	}
	p.stack.AlertsQueue = alerts
	for _, id := range sortedKeys(tmpl.Resources) {
		if _, err := p.ensure(id); err != nil && !errors.Is(err, errConditionFalse) {
			return nil, err
		}
	}
	if err := p.resolveFunction(); err != nil {
		return nil, err
	}
	return p.stack, nil
}

var errConditionFalse = errors.New("condition is false")

type provisioner struct {
	ctx     context.Context
	clients Clients
	tmpl    *Template
	opts    Options
	eval    *evaluator
	stack   *Stack
	state   map[string]int // logical ID → stateCreating or stateDone
}

const (
	stateCreating = 1
	stateDone     = 2
)

func (p *provisioner) note(format string, args ...any) {
	p.stack.Notes = append(p.stack.Notes, fmt.Sprintf(format, args...))
}

// ensure provisions the resource id (and, through its references, the
// resources it depends on) once.
func (p *provisioner) ensure(id string) (Resource, error) {
	switch p.state[id] {
	case stateDone:
		r, ok := p.stack.Resources[id]
		if !ok {
			return Resource{}, fmt.Errorf("resource %s: %w", id, errConditionFalse)
		}
		return r, nil
	case stateCreating:
		return Resource{}, fmt.Errorf("resource %s depends on itself", id)
	}
	def, ok := p.tmpl.Resources[id]
	if !ok {
		return Resource{}, fmt.Errorf("no resource %s in the template", id)
	}
	p.state[id] = stateCreating
	defer func() { p.state[id] = stateDone }()

	if def.Condition != "" {
		ok, err := p.eval.condition(def.Condition)
		if err != nil {
			return Resource{}, fmt.Errorf("resource %s: %w", id, err)
		}
		if !ok {
			p.note("%s %s: not created (condition %s is false)", def.Type, id, def.Condition)
			return Resource{}, fmt.Errorf("resource %s (condition %s): %w", id, def.Condition, errConditionFalse)
		}
	}
	for _, dep := range def.DependsOn {
		if _, err := p.ensure(dep); err != nil && !errors.Is(err, errConditionFalse) {
			return Resource{}, fmt.Errorf("resource %s depends on %s: %w", id, dep, err)
		}
	}

	var (
		r   Resource
		err error
	)
	switch def.Type {
	case "AWS::DynamoDB::Table":
		r, err = p.table(id, def)
	case "AWS::SQS::Queue":
		r, err = p.queue(id, def)
	case "AWS::Events::EventBus":
		r, err = p.eventBus(id, def)
	case "AWS::Events::Rule":
		r, err = p.rule(id, def)
	default:
		r = p.standIn(id, def)
	}
	if err != nil {
		return Resource{}, fmt.Errorf("%s %s: %w", def.Type, id, err)
	}
	r.LogicalID, r.Type = id, def.Type
	p.stack.Resources[id] = r
	return r, nil
}

func (p *provisioner) getAtt(id, attr string) (string, error) {
	r, err := p.ensure(id)
	if err != nil {
		return "", err
	}
	v, ok := r.Attributes[attr]
	if !ok {
		return "", fmt.Errorf("Fn::GetAtt %s.%s: attribute not available locally", id, attr)
	}
	return v, nil
}

// properties resolves a resource's Properties.
func (p *provisioner) properties(def ResourceDef) (*props, error) {
	resolved, err := p.eval.eval(def.Properties)
	if err != nil {
		return nil, err
	}
	m, _ := resolved.(map[string]any)
	return newProps(m), nil
}

// name returns explicit if set, else a generated "<stack>-<logicalID>"
// name cut to maxLen (keeping suffix, e.g. ".fifo").
func (p *provisioner) name(logicalID, explicit string, maxLen int, suffix ...string) string {
	if explicit != "" {
		return explicit
	}
	end := strings.Join(suffix, "")
	n := p.opts.StackName + "-" + logicalID
	if len(n)+len(end) > maxLen {
		n = n[:maxLen-len(end)]
	}
	return n + end
}

func (p *provisioner) arn(service, resource string) string {
	return fmt.Sprintf("arn:aws:%s:%s:%s:%s", service, p.opts.Region, p.opts.AccountID, resource)
}

// noteUnused reports properties that were resolved but have no local effect.
func (p *provisioner) noteUnused(id string, def ResourceDef, pr *props) {
	if u := pr.unused(); len(u) > 0 {
		p.note("%s %s: not applied locally: %s", def.Type, id, strings.Join(u, ", "))
	}
}

// ---------------------------------------------------------------- DynamoDB

func (p *provisioner) table(id string, def ResourceDef) (Resource, error) {
	pr, err := p.properties(def)
	if err != nil {
		return Resource{}, err
	}
	name := p.name(id, pr.str("TableName"), 255)
	in := &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		KeySchema:            keySchema(pr, pr.list("KeySchema")),
		AttributeDefinitions: attributeDefinitions(pr, pr.list("AttributeDefinitions")),
		BillingMode:          ddbtypes.BillingModeProvisioned,
	}
	if b := pr.str("BillingMode"); b != "" {
		in.BillingMode = ddbtypes.BillingMode(b)
	}
	if pt := pr.object("ProvisionedThroughput"); pt != nil {
		in.ProvisionedThroughput = throughput(pr, pt)
	}
	for _, raw := range pr.list("GlobalSecondaryIndexes") {
		m, _ := raw.(map[string]any)
		idx := ddbtypes.GlobalSecondaryIndex{
			IndexName:  aws.String(fmt.Sprint(m["IndexName"])),
			KeySchema:  keySchema(pr, asList(m["KeySchema"])),
			Projection: projection(m["Projection"]),
		}
		if pt, ok := m["ProvisionedThroughput"].(map[string]any); ok {
			idx.ProvisionedThroughput = throughput(pr, pt)
		}
		in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, idx)
	}
	for _, raw := range pr.list("LocalSecondaryIndexes") {
		m, _ := raw.(map[string]any)
		in.LocalSecondaryIndexes = append(in.LocalSecondaryIndexes, ddbtypes.LocalSecondaryIndex{
			IndexName:  aws.String(fmt.Sprint(m["IndexName"])),
			KeySchema:  keySchema(pr, asList(m["KeySchema"])),
			Projection: projection(m["Projection"]),
		})
	}
	if s := pr.object("StreamSpecification"); s != nil {
		view, _ := s["StreamViewType"].(string)
		in.StreamSpecification = &ddbtypes.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: ddbtypes.StreamViewType(view)}
	}
	if s := pr.object("SSESpecification"); s != nil {
		enabled, _ := asBool(s["SSEEnabled"])
		sse := &ddbtypes.SSESpecification{Enabled: aws.Bool(enabled)}
		if t, ok := s["SSEType"].(string); ok {
			sse.SSEType = ddbtypes.SSEType(t)
		}
		if k, ok := s["KMSMasterKeyId"].(string); ok {
			sse.KMSMasterKeyId = aws.String(k)
		}
		in.SSESpecification = sse
	}
	if pr.has("DeletionProtectionEnabled") {
		in.DeletionProtectionEnabled = aws.Bool(pr.boolean("DeletionProtectionEnabled"))
	}
	if c := pr.str("TableClass"); c != "" {
		in.TableClass = ddbtypes.TableClass(c)
	}
	ttl := pr.object("TimeToLiveSpecification")
	pitr := pr.object("PointInTimeRecoverySpecification")
	pr.ignore("Tags")
	if pr.err != nil {
		return Resource{}, pr.err
	}
	p.noteUnused(id, def, pr)

	var desc *ddbtypes.TableDescription
	out, err := p.clients.DynamoDB.CreateTable(p.ctx, in)
	var inUse *ddbtypes.ResourceInUseException
	switch {
	case err == nil:
		desc = out.TableDescription
	case errors.As(err, &inUse):
		got, derr := p.clients.DynamoDB.DescribeTable(p.ctx, &dynamodb.DescribeTableInput{TableName: in.TableName})
		if derr != nil {
			return Resource{}, fmt.Errorf("describe existing table %s: %w", name, derr)
		}
		desc = got.Table
		if !sameKeySchema(desc.KeySchema, in.KeySchema) {
			return Resource{}, fmt.Errorf("table %s already exists with another key schema", name)
		}
	default:
		return Resource{}, fmt.Errorf("create table %s: %w", name, err)
	}
	if desc.TableStatus != ddbtypes.TableStatusActive {
		w := dynamodb.NewTableExistsWaiter(p.clients.DynamoDB)
		if err := w.Wait(p.ctx, &dynamodb.DescribeTableInput{TableName: in.TableName}, time.Minute); err != nil {
			return Resource{}, fmt.Errorf("wait for table %s: %w", name, err)
		}
	}
	if ttl != nil {
		attr, err1 := field(ttl, "AttributeName")
		enabled, err2 := asBool(ttl["Enabled"])
		if err := errors.Join(err1, err2); err != nil {
			return Resource{}, fmt.Errorf("TimeToLiveSpecification: %w", err)
		}
		if _, err := p.clients.DynamoDB.UpdateTimeToLive(p.ctx, &dynamodb.UpdateTimeToLiveInput{
			TableName:               in.TableName,
			TimeToLiveSpecification: &ddbtypes.TimeToLiveSpecification{AttributeName: aws.String(attr), Enabled: aws.Bool(enabled)},
		}); err != nil && !isTTLAlreadySet(err) {
			return Resource{}, fmt.Errorf("update time to live of %s: %w", name, err)
		}
	}
	if pitr != nil {
		enabled, _ := asBool(pitr["PointInTimeRecoveryEnabled"])
		if _, err := p.clients.DynamoDB.UpdateContinuousBackups(p.ctx, &dynamodb.UpdateContinuousBackupsInput{
			TableName:                        in.TableName,
			PointInTimeRecoverySpecification: &ddbtypes.PointInTimeRecoverySpecification{PointInTimeRecoveryEnabled: aws.Bool(enabled)},
		}); err != nil {
			return Resource{}, fmt.Errorf("update continuous backups of %s: %w", name, err)
		}
	}

	r := Resource{Provisioned: true, Ref: name, Name: name, ARN: aws.ToString(desc.TableArn)}
	r.Attributes = map[string]string{"Arn": r.ARN}
	if desc.LatestStreamArn != nil {
		r.Attributes["StreamArn"] = aws.ToString(desc.LatestStreamArn)
	}
	return r, nil
}

// isTTLAlreadySet reports the error DynamoDB returns when TTL is set again
// on a reused table.
func isTTLAlreadySet(err error) bool {
	return err != nil && strings.Contains(err.Error(), "TimeToLive is already enabled")
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func keySchema(pr *props, l []any) []ddbtypes.KeySchemaElement {
	var out []ddbtypes.KeySchemaElement
	for _, raw := range l {
		m, _ := raw.(map[string]any)
		name, err1 := field(m, "AttributeName")
		typ, err2 := field(m, "KeyType")
		if err := errors.Join(err1, err2); err != nil {
			pr.fail(fmt.Errorf("KeySchema: %w", err))
		}
		out = append(out, ddbtypes.KeySchemaElement{AttributeName: aws.String(name), KeyType: ddbtypes.KeyType(typ)})
	}
	return out
}

func attributeDefinitions(pr *props, l []any) []ddbtypes.AttributeDefinition {
	var out []ddbtypes.AttributeDefinition
	for _, raw := range l {
		m, _ := raw.(map[string]any)
		name, err1 := field(m, "AttributeName")
		typ, err2 := field(m, "AttributeType")
		if err := errors.Join(err1, err2); err != nil {
			pr.fail(fmt.Errorf("AttributeDefinitions: %w", err))
		}
		out = append(out, ddbtypes.AttributeDefinition{AttributeName: aws.String(name), AttributeType: ddbtypes.ScalarAttributeType(typ)})
	}
	return out
}

func throughput(pr *props, m map[string]any) *ddbtypes.ProvisionedThroughput {
	r, err1 := asInt64(m["ReadCapacityUnits"])
	w, err2 := asInt64(m["WriteCapacityUnits"])
	if err := errors.Join(err1, err2); err != nil {
		pr.fail(fmt.Errorf("ProvisionedThroughput: %w", err))
	}
	return &ddbtypes.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(r), WriteCapacityUnits: aws.Int64(w)}
}

func projection(v any) *ddbtypes.Projection {
	m, _ := v.(map[string]any)
	pj := &ddbtypes.Projection{ProjectionType: ddbtypes.ProjectionTypeAll}
	if t, ok := m["ProjectionType"].(string); ok {
		pj.ProjectionType = ddbtypes.ProjectionType(t)
	}
	for _, a := range asList(m["NonKeyAttributes"]) {
		pj.NonKeyAttributes = append(pj.NonKeyAttributes, fmt.Sprint(a))
	}
	return pj
}

func sameKeySchema(a, b []ddbtypes.KeySchemaElement) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if aws.ToString(a[i].AttributeName) != aws.ToString(b[i].AttributeName) || a[i].KeyType != b[i].KeyType {
			return false
		}
	}
	return true
}

// --------------------------------------------------------------------- SQS

// queueAttributes are the AWS::SQS::Queue properties that are SQS queue
// attributes of the same name.
var queueAttributes = []string{
	"ContentBasedDeduplication", "DeduplicationScope", "DelaySeconds", "FifoQueue",
	"FifoThroughputLimit", "KmsDataKeyReusePeriodSeconds", "KmsMasterKeyId",
	"MaximumMessageSize", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds",
	"RedriveAllowPolicy", "RedrivePolicy", "SqsManagedSseEnabled", "VisibilityTimeout",
}

func (p *provisioner) queue(id string, def ResourceDef) (Resource, error) {
	pr, err := p.properties(def)
	if err != nil {
		return Resource{}, err
	}
	var suffix []string
	if pr.has("FifoQueue") && pr.boolean("FifoQueue") {
		suffix = append(suffix, ".fifo")
	}
	name := p.name(id, pr.str("QueueName"), 80, suffix...)
	attrs := map[string]string{}
	for _, a := range queueAttributes {
		if v, ok := pr.raw(a); ok {
			text, err := attributeText(v)
			if err != nil {
				return Resource{}, fmt.Errorf("property %s: %w", a, err)
			}
			attrs[a] = text
		}
	}
	pr.ignore("Tags")
	if pr.err != nil {
		return Resource{}, pr.err
	}
	p.noteUnused(id, def, pr)
	return p.createQueue(id, name, attrs)
}

func (p *provisioner) createQueue(id, name string, attrs map[string]string) (Resource, error) {
	out, err := p.clients.SQS.CreateQueue(p.ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		return Resource{}, fmt.Errorf("create queue %s: %w", name, err)
	}
	url := aws.ToString(out.QueueUrl)
	got, err := p.clients.SQS.GetQueueAttributes(p.ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       out.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return Resource{}, fmt.Errorf("get ARN of queue %s: %w", name, err)
	}
	arn := got.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	return Resource{
		LogicalID:   id,
		Type:        "AWS::SQS::Queue",
		Provisioned: true,
		Ref:         url,
		Name:        name,
		ARN:         arn,
		URL:         url,
		Attributes:  map[string]string{"Arn": arn, "QueueUrl": url, "QueueName": name},
	}, nil
}

// ------------------------------------------------------------- EventBridge

func (p *provisioner) eventBus(id string, def ResourceDef) (Resource, error) {
	pr, err := p.properties(def)
	if err != nil {
		return Resource{}, err
	}
	name := pr.str("Name")
	if name == "" {
		return Resource{}, errors.New("property Name is required")
	}
	in := &eventbridge.CreateEventBusInput{Name: aws.String(name)}
	if d := pr.str("Description"); d != "" {
		in.Description = aws.String(d)
	}
	pr.ignore("Tags")
	if pr.err != nil {
		return Resource{}, pr.err
	}
	p.noteUnused(id, def, pr)

	var arn string
	out, err := p.clients.EventBridge.CreateEventBus(p.ctx, in)
	var exists *ebtypes.ResourceAlreadyExistsException
	switch {
	case err == nil:
		arn = aws.ToString(out.EventBusArn)
	case errors.As(err, &exists):
		got, derr := p.clients.EventBridge.DescribeEventBus(p.ctx, &eventbridge.DescribeEventBusInput{Name: in.Name})
		if derr != nil {
			return Resource{}, fmt.Errorf("describe existing event bus %s: %w", name, derr)
		}
		arn = aws.ToString(got.Arn)
	default:
		return Resource{}, fmt.Errorf("create event bus %s: %w", name, err)
	}
	return Resource{
		Provisioned: true,
		Ref:         name,
		Name:        name,
		ARN:         arn,
		Attributes:  map[string]string{"Arn": arn, "Name": name},
	}, nil
}

// deliverable reports whether moto can deliver rule events to a target: it
// delivers to SQS queues, log groups and other buses, and fails the whole
// PutEvents call for any other target type.
func deliverable(arn string) bool {
	parts := strings.SplitN(arn, ":", 4)
	if len(parts) < 3 {
		return false
	}
	switch parts[2] {
	case "sqs", "logs", "events":
		return true
	}
	return false
}

func (p *provisioner) rule(id string, def ResourceDef) (Resource, error) {
	pr, err := p.properties(def)
	if err != nil {
		return Resource{}, err
	}
	name := p.name(id, pr.str("Name"), 64)
	in := &eventbridge.PutRuleInput{Name: aws.String(name)}
	bus := pr.str("EventBusName")
	if bus != "" {
		in.EventBusName = aws.String(bus)
	}
	if v, ok := pr.raw("EventPattern"); ok {
		text, err := attributeText(v)
		if err != nil {
			return Resource{}, fmt.Errorf("property EventPattern: %w", err)
		}
		in.EventPattern = aws.String(text)
	}
	if s := pr.str("ScheduleExpression"); s != "" {
		in.ScheduleExpression = aws.String(s)
	}
	if s := pr.str("State"); s != "" {
		in.State = ebtypes.RuleState(s)
	}
	if s := pr.str("Description"); s != "" {
		in.Description = aws.String(s)
	}
	if s := pr.str("RoleArn"); s != "" {
		in.RoleArn = aws.String(s)
	}
	rawTargets := pr.list("Targets")
	if pr.err != nil {
		return Resource{}, pr.err
	}
	p.noteUnused(id, def, pr)

	out, err := p.clients.EventBridge.PutRule(p.ctx, in)
	if err != nil {
		return Resource{}, fmt.Errorf("put rule %s: %w", name, err)
	}

	var (
		targets  []ebtypes.Target
		replaced *ebtypes.Target // first target moto cannot deliver to
	)
	for i, raw := range rawTargets {
		m, ok := raw.(map[string]any)
		if !ok {
			return Resource{}, fmt.Errorf("Targets[%d] is not a mapping", i)
		}
		t, err := ruleTarget(m)
		if err != nil {
			return Resource{}, fmt.Errorf("Targets[%d]: %w", i, err)
		}
		if deliverable(aws.ToString(t.Arn)) {
			targets = append(targets, t)
			continue
		}
		p.note("AWS::Events::Rule %s: target %s (%s) replaced by the local alerts queue", id, aws.ToString(t.Id), aws.ToString(t.Arn))
		if replaced == nil {
			replaced = &t
		}
	}
	// The alerts queue receives what the replaced target (the SNS topic)
	// would have: same input shaping, retry policy and dead-letter queue. A
	// rule whose targets all exist locally (a queue) needs no stand-in.
	if replaced != nil || len(targets) == 0 {
		alerts := ebtypes.Target{Id: aws.String("local-alerts-queue"), Arn: aws.String(p.stack.AlertsQueue.ARN)}
		if replaced != nil {
			alerts.Input, alerts.InputPath, alerts.InputTransformer = replaced.Input, replaced.InputPath, replaced.InputTransformer
			alerts.RetryPolicy, alerts.DeadLetterConfig = replaced.RetryPolicy, replaced.DeadLetterConfig
		}
		targets = append(targets, alerts)
	}
	put, err := p.clients.EventBridge.PutTargets(p.ctx, &eventbridge.PutTargetsInput{
		Rule:         in.Name,
		EventBusName: in.EventBusName,
		Targets:      targets,
	})
	if err != nil {
		return Resource{}, fmt.Errorf("put targets of rule %s: %w", name, err)
	}
	if put.FailedEntryCount > 0 {
		f := put.FailedEntries[0]
		return Resource{}, fmt.Errorf("put target %s of rule %s: %s: %s", aws.ToString(f.TargetId), name, aws.ToString(f.ErrorCode), aws.ToString(f.ErrorMessage))
	}

	arn := aws.ToString(out.RuleArn)
	return Resource{
		Provisioned: true,
		Ref:         name,
		Name:        name,
		ARN:         arn,
		Attributes:  map[string]string{"Arn": arn},
	}, nil
}

func ruleTarget(m map[string]any) (ebtypes.Target, error) {
	id, err1 := field(m, "Id")
	arn, err2 := field(m, "Arn")
	if err := errors.Join(err1, err2); err != nil {
		return ebtypes.Target{}, err
	}
	t := ebtypes.Target{Id: aws.String(id), Arn: aws.String(arn)}
	if v, ok := m["Input"]; ok {
		s, err := scalarString(v)
		if err != nil {
			return t, fmt.Errorf("Input: %w", err)
		}
		t.Input = aws.String(s)
	}
	if v, ok := m["InputPath"]; ok {
		s, err := scalarString(v)
		if err != nil {
			return t, fmt.Errorf("InputPath: %w", err)
		}
		t.InputPath = aws.String(s)
	}
	if it, ok := m["InputTransformer"].(map[string]any); ok {
		tmpl, err := field(it, "InputTemplate")
		if err != nil {
			return t, fmt.Errorf("InputTransformer: %w", err)
		}
		tr := &ebtypes.InputTransformer{InputTemplate: aws.String(tmpl)}
		if paths, ok := it["InputPathsMap"].(map[string]any); ok {
			tr.InputPathsMap = map[string]string{}
			for k, v := range paths {
				tr.InputPathsMap[k] = fmt.Sprint(v)
			}
		}
		t.InputTransformer = tr
	}
	if rp, ok := m["RetryPolicy"].(map[string]any); ok {
		t.RetryPolicy = &ebtypes.RetryPolicy{}
		if v, ok := rp["MaximumRetryAttempts"]; ok {
			n, err := asInt64(v)
			if err != nil {
				return t, fmt.Errorf("RetryPolicy.MaximumRetryAttempts: %w", err)
			}
			t.RetryPolicy.MaximumRetryAttempts = aws.Int32(int32(n))
		}
		if v, ok := rp["MaximumEventAgeInSeconds"]; ok {
			n, err := asInt64(v)
			if err != nil {
				return t, fmt.Errorf("RetryPolicy.MaximumEventAgeInSeconds: %w", err)
			}
			t.RetryPolicy.MaximumEventAgeInSeconds = aws.Int32(int32(n))
		}
	}
	if dl, ok := m["DeadLetterConfig"].(map[string]any); ok {
		a, err := field(dl, "Arn")
		if err != nil {
			return t, fmt.Errorf("DeadLetterConfig: %w", err)
		}
		t.DeadLetterConfig = &ebtypes.DeadLetterConfig{Arn: aws.String(a)}
	}
	if sp, ok := m["SqsParameters"].(map[string]any); ok {
		g, err := field(sp, "MessageGroupId")
		if err != nil {
			return t, fmt.Errorf("SqsParameters: %w", err)
		}
		t.SqsParameters = &ebtypes.SqsParameters{MessageGroupId: aws.String(g)}
	}
	return t, nil
}

// --------------------------------------------------------------- stand-ins

// standIn records a resource that is not created locally, with the
// identifiers CloudFormation would give it.
func (p *provisioner) standIn(id string, def ResourceDef) Resource {
	name := p.name(id, "", 64)
	var r Resource
	switch def.Type {
	case "AWS::Serverless::Function", "AWS::Lambda::Function":
		arn := p.arn("lambda", "function:"+name)
		r = Resource{Ref: name, Name: name, ARN: arn, Attributes: map[string]string{"Arn": arn}}
		p.note("%s %s: not created; run it with the Runtime Interface Emulator", def.Type, id)
	case "AWS::SNS::Topic":
		arn := p.arn("sns", name)
		r = Resource{Ref: arn, Name: name, ARN: arn, Attributes: map[string]string{"TopicArn": arn, "TopicName": name}}
		p.note("%s %s: not created; rules deliver to the local alerts queue instead (SNS e-mail cannot be observed locally)", def.Type, id)
	case "AWS::IAM::Role":
		arn := fmt.Sprintf("arn:aws:iam::%s:role/%s", p.opts.AccountID, name)
		r = Resource{Ref: name, Name: name, ARN: arn, Attributes: map[string]string{"Arn": arn, "RoleId": name}}
		p.note("%s %s: not created (no IAM locally)", def.Type, id)
	case "AWS::Logs::LogGroup":
		arn := p.arn("logs", "log-group:"+name+":*")
		r = Resource{Ref: name, Name: name, ARN: arn, Attributes: map[string]string{"Arn": arn}}
		p.note("%s %s: not created (function logs go to the emulator's output)", def.Type, id)
	case "AWS::CloudWatch::Alarm":
		arn := p.arn("cloudwatch", "alarm:"+name)
		r = Resource{Ref: name, Name: name, ARN: arn, Attributes: map[string]string{"Arn": arn}}
		p.note("%s %s: not created (no metrics locally)", def.Type, id)
	default:
		r = Resource{Ref: name, Name: name, Attributes: map[string]string{}}
		p.note("%s %s: not created (not needed locally)", def.Type, id)
	}
	return r
}

// ---------------------------------------------------------------- function

func (p *provisioner) resolveFunction() error {
	id := p.opts.FunctionID
	if id == "" {
		var fns []string
		for _, t := range []string{"AWS::Serverless::Function", "AWS::Lambda::Function"} {
			fns = append(fns, p.tmpl.ResourceIDs(t)...)
		}
		switch {
		case len(fns) == 0:
			return nil
		case len(fns) == 1:
			id = fns[0]
		default:
			id = AttributionFunctionID
		}
	}
	def, ok := p.tmpl.Resources[id]
	if !ok {
		return fmt.Errorf("function %s is not in the template", id)
	}
	res, ok := p.stack.Resources[id]
	if !ok {
		return fmt.Errorf("function %s is not part of the stack (condition false)", id)
	}
	pr, err := p.properties(def)
	if err != nil {
		return fmt.Errorf("function %s: %w", id, err)
	}
	var globals map[string]any
	if def.Type == "AWS::Serverless::Function" {
		g, err := p.eval.eval(mapOrEmpty(p.tmpl.Globals["Function"]))
		if err != nil {
			return fmt.Errorf("Globals.Function: %w", err)
		}
		globals, _ = g.(map[string]any)
	}
	setting := func(name string) (any, bool) {
		if v, ok := pr.raw(name); ok {
			return v, true
		}
		v, ok := globals[name]
		return v, ok
	}

	fn := Function{
		LogicalID:   id,
		Name:        res.Name,
		Environment: map[string]string{},
		Timeout:     3 * time.Second,
		MemorySize:  128,
		RuntimeEnv:  map[string]string{},
	}
	for _, source := range []map[string]any{globals, pr.m} {
		vars := mapOrEmpty(mapOrEmpty(source["Environment"])["Variables"])
		for k, v := range vars {
			s, err := scalarString(v)
			if err != nil {
				return fmt.Errorf("function %s environment %s: %w", id, k, err)
			}
			fn.Environment[k] = s
		}
	}
	if v, ok := setting("Timeout"); ok {
		n, err := asInt64(v)
		if err != nil {
			return fmt.Errorf("function %s Timeout: %w", id, err)
		}
		fn.Timeout = time.Duration(n) * time.Second
	}
	if v, ok := setting("MemorySize"); ok {
		n, err := asInt64(v)
		if err != nil {
			return fmt.Errorf("function %s MemorySize: %w", id, err)
		}
		fn.MemorySize = int(n)
	}
	fn.RuntimeEnv["AWS_LAMBDA_FUNCTION_NAME"] = fn.Name
	fn.RuntimeEnv["AWS_LAMBDA_FUNCTION_TIMEOUT"] = strconv.Itoa(int(fn.Timeout / time.Second))
	fn.RuntimeEnv["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = strconv.Itoa(fn.MemorySize)
	if v, ok := setting("LoggingConfig"); ok {
		lc, _ := v.(map[string]any)
		if f, _ := lc["LogFormat"].(string); f != "" {
			fn.RuntimeEnv["AWS_LAMBDA_LOG_FORMAT"] = f
			if l, _ := lc["ApplicationLogLevel"].(string); l != "" && f == "JSON" {
				fn.RuntimeEnv["AWS_LAMBDA_LOG_LEVEL"] = l
			}
		}
	}

	if events, ok := setting("Events"); ok {
		for _, name := range sortedKeys(mapOrEmpty(events)) {
			ev := mapOrEmpty(mapOrEmpty(events)[name])
			if ev["Type"] != "SQS" {
				continue
			}
			es, err := p.eventSource(name, mapOrEmpty(ev["Properties"]))
			if err != nil {
				return fmt.Errorf("function %s event %s: %w", id, name, err)
			}
			fn.EventSources = append(fn.EventSources, es)
		}
	}
	p.stack.Function = fn
	return nil
}

func (p *provisioner) eventSource(name string, m map[string]any) (EventSource, error) {
	es := EventSource{Name: name, BatchSize: 10}
	arn, err := field(m, "Queue")
	if err != nil {
		return es, err
	}
	es.QueueARN = arn
	for id, r := range p.stack.Resources {
		if r.Type == "AWS::SQS::Queue" && r.ARN == arn {
			es.QueueLogicalID, es.QueueURL = id, r.URL
		}
	}
	if v, ok := m["BatchSize"]; ok {
		n, err := asInt64(v)
		if err != nil {
			return es, fmt.Errorf("BatchSize: %w", err)
		}
		es.BatchSize = int(n)
	}
	if v, ok := m["MaximumBatchingWindowInSeconds"]; ok {
		n, err := asInt64(v)
		if err != nil {
			return es, fmt.Errorf("MaximumBatchingWindowInSeconds: %w", err)
		}
		es.MaximumBatchingWindow = time.Duration(n) * time.Second
	}
	if sc, ok := m["ScalingConfig"].(map[string]any); ok {
		if v, ok := sc["MaximumConcurrency"]; ok {
			n, err := asInt64(v)
			if err != nil {
				return es, fmt.Errorf("ScalingConfig.MaximumConcurrency: %w", err)
			}
			es.MaximumConcurrency = int(n)
		}
	}
	for _, t := range asList(m["FunctionResponseTypes"]) {
		es.FunctionResponseTypes = append(es.FunctionResponseTypes, fmt.Sprint(t))
	}
	return es, nil
}
