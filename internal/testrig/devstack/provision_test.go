package devstack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/devstack"
)

func TestMain(m *testing.M) { awstest.Main(m) }

type key struct{ name, typ string }

// TestProvisionedTables checks the tables against the project's contract
// and against the template's own definitions.
func TestProvisionedTables(t *testing.T) {
	t.Parallel()
	srv := awstest.Moto(t)
	stack := awstest.NewStack(t, srv)
	db := dynamodb.NewFromConfig(srv.Config())
	ctx := context.Background()

	tests := []struct {
		logicalID string
		keys      []key
		attrs     map[string]string
		ttl       string
	}{
		{devstack.IdentitiesTableID, []key{{"attacker_uuid", "HASH"}}, map[string]string{"attacker_uuid": "S"}, ""},
		{devstack.ObservationsTableID, []key{{"series", "HASH"}, {"evidence_ref", "RANGE"}}, map[string]string{"series": "S", "evidence_ref": "S"}, "expires_at"},
		{devstack.StatesTableID, []key{{"identity_uuid", "HASH"}, {"primitive", "RANGE"}}, map[string]string{"identity_uuid": "S", "primitive": "S"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.logicalID, func(t *testing.T) {
			name := stack.TableName(tt.logicalID)
			if !strings.HasPrefix(name, stack.Name+"-") {
				t.Fatalf("table name %q does not carry the stack name %q", name, stack.Name)
			}
			out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
			if err != nil {
				t.Fatal(err)
			}
			var keys []key
			for _, k := range out.Table.KeySchema {
				keys = append(keys, key{aws.ToString(k.AttributeName), string(k.KeyType)})
			}
			if fmt.Sprint(keys) != fmt.Sprint(tt.keys) {
				t.Errorf("key schema = %v, want %v", keys, tt.keys)
			}
			attrs := map[string]string{}
			for _, a := range out.Table.AttributeDefinitions {
				attrs[aws.ToString(a.AttributeName)] = string(a.AttributeType)
			}
			if fmt.Sprint(attrs) != fmt.Sprint(tt.attrs) {
				t.Errorf("attribute definitions = %v, want %v", attrs, tt.attrs)
			}
			if out.Table.BillingModeSummary == nil || out.Table.BillingModeSummary.BillingMode != ddbtypes.BillingModePayPerRequest {
				t.Errorf("billing mode = %+v, want PAY_PER_REQUEST", out.Table.BillingModeSummary)
			}
			if got := aws.ToString(out.Table.TableArn); got != stack.ARN(tt.logicalID) {
				t.Errorf("stack ARN = %q, table ARN %q", stack.ARN(tt.logicalID), got)
			}

			ttl, err := db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(name)})
			if err != nil {
				t.Fatal(err)
			}
			desc := ttl.TimeToLiveDescription
			enabled := desc != nil && desc.TimeToLiveStatus == ddbtypes.TimeToLiveStatusEnabled
			switch {
			case tt.ttl == "" && enabled:
				t.Errorf("TTL enabled on %s, want none", aws.ToString(desc.AttributeName))
			case tt.ttl != "" && (!enabled || aws.ToString(desc.AttributeName) != tt.ttl):
				t.Errorf("TTL = %+v, want enabled on %s", desc, tt.ttl)
			}

			pitr, err := db.DescribeContinuousBackups(ctx, &dynamodb.DescribeContinuousBackupsInput{TableName: aws.String(name)})
			if err != nil {
				t.Fatal(err)
			}
			if d := pitr.ContinuousBackupsDescription.PointInTimeRecoveryDescription; d == nil || d.PointInTimeRecoveryStatus != ddbtypes.PointInTimeRecoveryStatusEnabled {
				t.Errorf("point-in-time recovery = %+v, want enabled", d)
			}
		})
	}

	// The same keys, read from the template rather than the contract: the
	// provisioner must not have invented anything.
	tmpl := awstest.Template(t)
	for _, id := range tmpl.ResourceIDs("AWS::DynamoDB::Table") {
		want, _ := json.Marshal(tmpl.Resources[id].Properties["KeySchema"])
		out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(stack.TableName(id))})
		if err != nil {
			t.Fatal(err)
		}
		var got []map[string]string
		for _, k := range out.Table.KeySchema {
			got = append(got, map[string]string{"AttributeName": aws.ToString(k.AttributeName), "KeyType": string(k.KeyType)})
		}
		gotJSON, _ := json.Marshal(got)
		if string(gotJSON) != string(want) {
			t.Errorf("%s key schema = %s, template says %s", id, gotJSON, want)
		}
	}
}

func TestProvisionedQueues(t *testing.T) {
	t.Parallel()
	srv := awstest.Moto(t)
	stack := awstest.NewStack(t, srv)
	q := sqs.NewFromConfig(srv.Config())
	ctx := context.Background()

	attrs := func(t *testing.T, logicalID string) map[string]string {
		t.Helper()
		url := stack.QueueURL(logicalID)
		if url == "" {
			t.Fatalf("stack has no queue %s", logicalID)
		}
		out, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl:       aws.String(url),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
		})
		if err != nil {
			t.Fatal(err)
		}
		return out.Attributes
	}

	obs := attrs(t, devstack.ObservationQueueID)
	var redrive struct {
		DeadLetterTargetARN string          `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(obs["RedrivePolicy"]), &redrive); err != nil {
		t.Fatalf("RedrivePolicy %q: %v", obs["RedrivePolicy"], err)
	}
	dlq := attrs(t, devstack.ObservationDeadLetterQueueID)
	if redrive.DeadLetterTargetARN != dlq["QueueArn"] || dlq["QueueArn"] == "" {
		t.Errorf("redrive target = %q, want the dead-letter queue %q", redrive.DeadLetterTargetARN, dlq["QueueArn"])
	}
	if got := strings.Trim(string(redrive.MaxReceiveCount), `"`); got != "5" {
		t.Errorf("maxReceiveCount = %s, want the MaxReceiveCount default 5", redrive.MaxReceiveCount)
	}
	// VisibilityTimeout comes from the VisibilityTimeouts mapping at the
	// default FunctionTimeout of 30.
	for attr, want := range map[string]string{"VisibilityTimeout": "180", "MessageRetentionPeriod": "345600"} {
		if obs[attr] != want {
			t.Errorf("observation queue %s = %q, want %q", attr, obs[attr], want)
		}
	}
	if got := dlq["MessageRetentionPeriod"]; got != "1209600" {
		t.Errorf("dead-letter queue MessageRetentionPeriod = %q, want 1209600", got)
	}

	// Parameters change what is provisioned.
	other := awstest.NewStack(t, srv, awstest.WithParameters(map[string]string{"FunctionTimeout": "60", "MaxReceiveCount": "2"}))
	out, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(other.QueueURL(devstack.ObservationQueueID)),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Attributes["VisibilityTimeout"]; got != "360" {
		t.Errorf("VisibilityTimeout with FunctionTimeout=60 = %q, want 360", got)
	}
	if !strings.Contains(out.Attributes["RedrivePolicy"], `"maxReceiveCount": 2`) && !strings.Contains(out.Attributes["RedrivePolicy"], `"maxReceiveCount":2`) {
		t.Errorf("RedrivePolicy with MaxReceiveCount=2 = %s", out.Attributes["RedrivePolicy"])
	}
	if other.QueueURL(devstack.ObservationQueueID) == stack.QueueURL(devstack.ObservationQueueID) {
		t.Error("two stacks share one observation queue")
	}
}

// TestAlertRuleRoutesToAlertsQueue publishes events on the stack's bus and
// checks that the template's rule delivers exactly the matching ones to the
// local alerts queue.
func TestAlertRuleRoutesToAlertsQueue(t *testing.T) {
	t.Parallel()
	srv := awstest.Moto(t)
	stack := awstest.NewStack(t, srv)
	eb := eventbridge.NewFromConfig(srv.Config())
	q := sqs.NewFromConfig(srv.Config())
	ctx := context.Background()

	tests := []struct {
		name       string
		source     string
		detailType string
		detail     string
		routed     bool
	}{
		{"multi actor suspected", "decnet.attribution", "attribution.profile.multi_actor_suspected", `{"identity_uuid":"i1","primitives":["a","b"]}`, true},
		{"state changed to drifting", "decnet.attribution", "attribution.profile.state_changed", `{"identity_uuid":"i2","new_state":"drifting"}`, true},
		{"state changed to multi_actor", "decnet.attribution", "attribution.profile.state_changed", `{"identity_uuid":"i3","new_state":"multi_actor"}`, true},
		{"state changed to stable", "decnet.attribution", "attribution.profile.state_changed", `{"identity_uuid":"i4","new_state":"stable"}`, false},
		{"foreign source", "someone.else", "attribution.profile.multi_actor_suspected", `{"identity_uuid":"i5"}`, false},
	}
	for _, tt := range tests {
		out, err := eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
			EventBusName: aws.String(stack.BusName(devstack.AttributionBusID)),
			Source:       aws.String(tt.source),
			DetailType:   aws.String(tt.detailType),
			Detail:       aws.String(tt.detail),
		}}})
		if err != nil {
			t.Fatalf("%s: put event: %v", tt.name, err)
		}
		if out.FailedEntryCount != 0 {
			t.Fatalf("%s: put event failed: %+v", tt.name, out.Entries)
		}
	}

	got := map[string]bool{}
	for {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(stack.AlertsQueue.URL),
			MaxNumberOfMessages: 10,
			WaitTimeSeconds:     0,
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			break
		}
		for _, m := range out.Messages {
			var ev struct {
				Detail struct {
					IdentityUUID string `json:"identity_uuid"`
				} `json:"detail"`
			}
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &ev); err != nil {
				t.Fatalf("alert body %s: %v", aws.ToString(m.Body), err)
			}
			got[ev.Detail.IdentityUUID] = true
			if _, err := q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(stack.AlertsQueue.URL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, tt := range tests {
		id := fmt.Sprintf("i%d", i+1)
		if got[id] != tt.routed {
			t.Errorf("%s: reached the alerts queue = %v, want %v", tt.name, got[id], tt.routed)
		}
	}

	// The rule keeps the template's retry policy and dead-letter queue on
	// the target standing in for the topic.
	targets, err := eb.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{
		Rule:         aws.String(stack.Resources[devstack.AlertRuleID].Name),
		EventBusName: aws.String(stack.BusName(devstack.AttributionBusID)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(targets.Targets) != 1 {
		t.Fatalf("rule targets = %d, want only the alerts queue", len(targets.Targets))
	}
	tg := targets.Targets[0]
	if aws.ToString(tg.Arn) != stack.AlertsQueue.ARN {
		t.Errorf("target ARN = %s, want the alerts queue %s", aws.ToString(tg.Arn), stack.AlertsQueue.ARN)
	}
	if tg.DeadLetterConfig == nil || aws.ToString(tg.DeadLetterConfig.Arn) != stack.ARN(devstack.AlertRuleDeadLetterQueueID) {
		t.Errorf("target dead-letter config = %+v, want %s", tg.DeadLetterConfig, stack.ARN(devstack.AlertRuleDeadLetterQueueID))
	}
	if tg.RetryPolicy == nil || aws.ToInt32(tg.RetryPolicy.MaximumRetryAttempts) != 185 || aws.ToInt32(tg.RetryPolicy.MaximumEventAgeInSeconds) != 86400 {
		t.Errorf("target retry policy = %+v, want the template defaults 185 / 86400", tg.RetryPolicy)
	}
}

func TestFunctionEnvironment(t *testing.T) {
	t.Parallel()
	srv := awstest.Moto(t)
	stack := awstest.NewStack(t, srv, awstest.WithParameters(map[string]string{"AttributionWindow": "7", "ObservationTtlDays": "30"}))
	env := stack.EnvMap()

	want := map[string]string{
		"AWS_ENDPOINT_URL":                       srv.Endpoint,
		"AWS_REGION":                             "us-east-1",
		"AWS_ACCESS_KEY_ID":                      "test",
		"AWS_SECRET_ACCESS_KEY":                  "test",
		"IDENTITIES_TABLE":                       stack.TableName(devstack.IdentitiesTableID),
		"OBSERVATIONS_TABLE":                     stack.TableName(devstack.ObservationsTableID),
		"STATES_TABLE":                           stack.TableName(devstack.StatesTableID),
		"EVENT_BUS_NAME":                         stack.Name + "-attribution",
		"OBSERVATION_QUEUE_URL":                  stack.QueueURL(devstack.ObservationQueueID),
		"DLQ_URL":                                stack.QueueURL(devstack.ObservationDeadLetterQueueID),
		"ALERTS_QUEUE_URL":                       stack.AlertsQueue.URL,
		"OBSERVATION_TTL_DAYS":                   "30",
		"ATTRIBUTION_WINDOW":                     "7",
		"ATTRIBUTION_MIN_OBSERVATIONS":           "3",
		"ATTRIBUTION_CATEGORICAL_MAJORITY":       "4",
		"ATTRIBUTION_NUMERIC_ALPHA":              "0.3",
		"ATTRIBUTION_NUMERIC_STABLE_CV":          "0.2",
		"ATTRIBUTION_NUMERIC_DRIFT_SHIFT":        "0.3",
		"ATTRIBUTION_NUMERIC_CONFLICT_CV":        "1.0",
		"ATTRIBUTION_HASH_MAX_ROTATIONS":         "2",
		"ATTRIBUTION_HASH_WINDOW_SECONDS":        "86400",
		"ATTRIBUTION_MULTI_ACTOR_CONFIDENCE_CAP": "0.6",
		"ATTRIBUTION_MULTI_ACTOR_MIN_PRIMITIVES": "2",
	}
	for k, v := range want {
		if env[k] != v || v == "" {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if v, ok := env["ATTRIBUTION_REGISTRY"]; ok {
		t.Errorf("ATTRIBUTION_REGISTRY = %q, want it absent (AWS::NoValue when the parameter is empty)", v)
	}
	for k, v := range stack.Function.Environment {
		if env[k] != v && v != "" {
			t.Errorf("Env %s = %q, template gives the function %q", k, env[k], v)
		}
	}
	if env["AWS_ENDPOINT_URL"] != stack.Endpoint {
		t.Errorf("AWS_ENDPOINT_URL = %q, want the local endpoint %q over the template's empty value", env["AWS_ENDPOINT_URL"], stack.Endpoint)
	}

	fn := stack.Function
	if fn.LogicalID != devstack.AttributionFunctionID || fn.Timeout != 30*time.Second || fn.MemorySize != 256 {
		t.Errorf("function = %s timeout %s memory %d, want AttributionFunction 30s 256", fn.LogicalID, fn.Timeout, fn.MemorySize)
	}
	for k, v := range map[string]string{"AWS_LAMBDA_FUNCTION_TIMEOUT": "30", "AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO"} {
		if fn.RuntimeEnv[k] != v {
			t.Errorf("RuntimeEnv %s = %q, want %q", k, fn.RuntimeEnv[k], v)
		}
	}
	if len(fn.EventSources) != 1 {
		t.Fatalf("event sources = %+v, want one", fn.EventSources)
	}
	es := fn.EventSources[0]
	if es.QueueLogicalID != devstack.ObservationQueueID || es.QueueURL != env["OBSERVATION_QUEUE_URL"] || es.BatchSize != 10 ||
		es.MaximumBatchingWindow != time.Second || es.MaximumConcurrency != 0 || strings.Join(es.FunctionResponseTypes, ",") != "ReportBatchItemFailures" {
		t.Errorf("event source = %+v", es)
	}

	notes := strings.Join(stack.Notes, "\n")
	for _, want := range []string{"AWS::SNS::Topic AlertTopic: not created", "AWS::Serverless::Function AttributionFunction: not created", "AlertEmailSubscription: not created (condition HasAlertEmail is false)"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
}

func TestProvisionTwiceReuses(t *testing.T) {
	t.Parallel()
	srv := awstest.Moto(t)
	tmpl := awstest.Template(t)
	opts := devstack.Options{StackName: devstack.UniqueName("t"), Endpoint: srv.Endpoint}
	ctx := context.Background()
	first, err := devstack.Provision(ctx, devstack.NewClients(srv.Config()), tmpl, opts)
	if err != nil {
		t.Fatal(err)
	}
	second, err := devstack.Provision(ctx, devstack.NewClients(srv.Config()), tmpl, opts)
	if err != nil {
		t.Fatalf("provision the same stack again: %v", err)
	}
	if fmt.Sprint(first.Env()) != fmt.Sprint(second.Env()) {
		t.Errorf("second provisioning differs:\n%v\n%v", first.Env(), second.Env())
	}
}

func TestProvisionRejectsBadParameter(t *testing.T) {
	t.Parallel()
	srv := awstest.Moto(t)
	_, err := devstack.Provision(context.Background(), devstack.NewClients(srv.Config()), awstest.Template(t), devstack.Options{
		StackName:  devstack.UniqueName("t"),
		Parameters: map[string]string{"FunctionTimeout": "7"}, // not in the VisibilityTimeouts mapping
	})
	if err == nil || !strings.Contains(err.Error(), "VisibilityTimeouts/7/Seconds not found") {
		t.Errorf("error = %v, want the mapping lookup to fail", err)
	}
}
