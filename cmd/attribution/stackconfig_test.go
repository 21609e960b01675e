package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"decnet-attribution/internal/config"
	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/devstack"
	"decnet-attribution/internal/wiring"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// cliResult is what one run of the command produced.
type cliResult struct {
	code           int
	stdout, stderr string
}

// runCLI runs the command in-process.
func runCLI(tb testing.TB, stdin string, args ...string) cliResult {
	tb.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return cliResult{code: code, stdout: out.String(), stderr: errOut.String()}
}

// isolateAWS clears the AWS settings the environment may carry and gives
// local credentials, so that only what a test sets counts.
func isolateAWS(tb testing.TB) {
	tb.Helper()
	dir := tb.TempDir()
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_PROFILE":                 "",
		"AWS_ACCESS_KEY_ID":           devstack.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":       devstack.SecretAccessKey,
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  "",
		"AWS_DEFAULT_REGION":          "",
		"AWS_ENDPOINT_URL":            "",
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		tb.Setenv(k, v)
	}
	for _, r := range []resource{identitiesTable, observationsTable, statesTable, observationQueue, eventBus} {
		tb.Setenv(r.env, "")
	}
	tb.Setenv("ATTRIBUTION_REGISTRY", "")
	for _, name := range []string{
		"ATTRIBUTION_WINDOW", "ATTRIBUTION_MIN_OBSERVATIONS", "ATTRIBUTION_CATEGORICAL_MAJORITY",
		"ATTRIBUTION_NUMERIC_ALPHA", "ATTRIBUTION_NUMERIC_STABLE_CV", "ATTRIBUTION_NUMERIC_DRIFT_SHIFT",
		"ATTRIBUTION_NUMERIC_CONFLICT_CV", "ATTRIBUTION_HASH_MAX_ROTATIONS", "ATTRIBUTION_HASH_WINDOW_SECONDS",
		"ATTRIBUTION_MULTI_ACTOR_CONFIDENCE_CAP", "ATTRIBUTION_MULTI_ACTOR_MIN_PRIMITIVES",
	} {
		tb.Setenv(name, "")
	}
}

// mustStack gives the test a stack on the shared moto server, with the
// SDK's AWS_ENDPOINT_URL and AWS_REGION pointing at it.
func mustStack(tb testing.TB) (*awstest.Server, *devstack.Stack) {
	tb.Helper()
	srv := awstest.Moto(tb) // before isolateAWS: the server inherits the environment
	isolateAWS(tb)
	stack := awstest.NewStack(tb, srv)
	tb.Setenv("AWS_ENDPOINT_URL", srv.Endpoint)
	tb.Setenv("AWS_REGION", devstack.DefaultRegion)
	return srv, stack
}

// mustDeliver receives everything on the stack's observation queue and
// hands it to the function's handler, as the event source mapping would.
func mustDeliver(tb testing.TB, srv *awstest.Server, stack *devstack.Stack) int {
	tb.Helper()
	ctx := context.Background()
	env := stack.EnvMap()
	cfg, err := config.FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		tb.Fatal(err)
	}
	h, err := wiring.New(cfg, srv.Config(), wiring.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	client := sqs.NewFromConfig(srv.Config())
	queue := stack.QueueURL(devstack.ObservationQueueID)
	delivered := 0
	for empty := 0; empty < 2; {
		got, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(queue), MaxNumberOfMessages: 10, VisibilityTimeout: 60})
		if err != nil {
			tb.Fatal(err)
		}
		if len(got.Messages) == 0 {
			empty++
			continue
		}
		empty = 0
		var ev events.SQSEvent
		for _, m := range got.Messages {
			ev.Records = append(ev.Records, events.SQSMessage{MessageId: aws.ToString(m.MessageId), Body: aws.ToString(m.Body),
				Attributes: map[string]string{"ApproximateReceiveCount": "1"}})
		}
		resp, err := h.Handle(ctx, ev)
		if err != nil || len(resp.BatchItemFailures) > 0 {
			tb.Fatalf("handler: %v, failures %v", err, resp.BatchItemFailures)
		}
		for _, m := range got.Messages {
			if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queue), ReceiptHandle: m.ReceiptHandle}); err != nil {
				tb.Fatal(err)
			}
		}
		delivered += len(got.Messages)
	}
	return delivered
}

// jsonLines decodes JSON Lines into maps.
func jsonLines(tb testing.TB, text string) []map[string]any {
	tb.Helper()
	var out []map[string]any
	dec := json.NewDecoder(strings.NewReader(text))
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			tb.Fatalf("%v in %s", err, text)
		}
		out = append(out, m)
	}
	return out
}

func TestResolveOrder(t *testing.T) {
	isolateAWS(t)
	t.Setenv("AWS_REGION", "eu-west-1")
	outputs := map[string]string{
		"ObservationsTableName": "obs-from-stack",
		"StatesTableName":       "states-from-stack",
		"AttributionBusName":    "bus-from-stack",
	}
	describe := func(_ context.Context, _ aws.Config, stack string) (map[string]string, error) {
		if stack != "prod" {
			t.Fatalf("described stack %q", stack)
		}
		return outputs, nil
	}
	env := map[string]string{"STATES_TABLE": "states-from-env", "OBSERVATIONS_TABLE": "obs-from-env"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	f := addAWSFlags(fs, observationsTable, statesTable, eventBus, identitiesTable)
	f.describeStacks = describe
	if err := fs.Parse([]string{"--stack", "prod", "--observations-table", "obs-from-flag", "--endpoint-url", "http://127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	setup, err := f.resolve(context.Background(), lookup, observationsTable, statesTable, eventBus)
	if err != nil {
		t.Fatal(err)
	}
	for r, want := range map[resource]string{
		observationsTable: "obs-from-flag",   // flag beats environment and stack
		statesTable:       "states-from-env", // environment beats stack
		eventBus:          "bus-from-stack",  // stack when nothing else
		identitiesTable:   "",                // optional and nowhere
	} {
		if got := setup.name(r); got != want {
			t.Errorf("%s = %q, want %q", r.label, got, want)
		}
	}
	if setup.cfg.Region != "eu-west-1" || aws.ToString(setup.cfg.BaseEndpoint) != "http://127.0.0.1:1" {
		t.Errorf("region %q endpoint %v", setup.cfg.Region, setup.cfg.BaseEndpoint)
	}

	// Required and found nowhere: each way to set it is named.
	_, err = f.resolve(context.Background(), lookup, identitiesTable)
	if err == nil || err.Error() != "identities table: stack prod has no output IdentitiesTableName; pass --identities-table or set IDENTITIES_TABLE" {
		t.Errorf("missing with a stack: %v", err)
	}
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	f = addAWSFlags(fs, statesTable, identitiesTable)
	_ = fs.Parse(nil)
	_, err = f.resolve(context.Background(), func(string) (string, bool) { return "", false }, statesTable, identitiesTable)
	if err == nil || !strings.Contains(err.Error(), "states table: not set; pass --states-table, set STATES_TABLE or --stack") ||
		!strings.Contains(err.Error(), "identities table: not set; pass --identities-table, set IDENTITIES_TABLE or --stack") {
		t.Errorf("missing without a stack: %v", err)
	}

	// No region anywhere.
	t.Setenv("AWS_REGION", "")
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	f = addAWSFlags(fs, statesTable)
	_ = fs.Parse([]string{"--states-table", "x"})
	if _, err := f.resolve(context.Background(), lookup, statesTable); err == nil || !strings.HasPrefix(err.Error(), "region: not set") {
		t.Errorf("no region: %v", err)
	}
}

func TestStackOutputsFromCloudFormation(t *testing.T) {
	srv, stack := mustStack(t)
	ctx := context.Background()
	cfn := cloudformation.NewFromConfig(srv.Config())
	name := devstack.UniqueName("cli-")
	outputs := map[string]any{}
	for _, r := range []resource{identitiesTable, observationsTable, statesTable, eventBus} {
		outputs[r.output] = map[string]any{"Value": stack.EnvMap()[r.env]}
	}
	outputs[observationQueue.output] = map[string]any{"Value": stack.QueueURL(devstack.ObservationQueueID)}
	tmpl, _ := json.Marshal(map[string]any{
		"Resources": map[string]any{"Marker": map[string]any{"Type": "AWS::SQS::Queue", "Properties": map[string]any{"QueueName": name}}},
		"Outputs":   outputs,
	})
	if _, err := cfn.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String(name), TemplateBody: aws.String(string(tmpl))}); err != nil {
		t.Fatal(err)
	}
	got, err := readStackOutputs(ctx, cfn, name)
	if err != nil {
		t.Fatal(err)
	}
	if got["StatesTableName"] != stack.TableName(devstack.StatesTableID) || got["ObservationQueueUrl"] != stack.QueueURL(devstack.ObservationQueueID) {
		t.Fatalf("outputs %v", got)
	}
	if _, err := readStackOutputs(ctx, cfn, "no-such-stack"); err == nil || err.Error() != "stack no-such-stack does not exist (check the name, the region and the endpoint)" {
		t.Fatalf("missing stack: %v", err)
	}

	// The whole path: send to the queue named by the stack's outputs only.
	line := `{"attacker_uuid":"att-s","primitive":"motor.input_modality","evidence_ref":"r1","ts":1,"value":"typed"}`
	res := runCLI(t, line+"\n", "send", "--stack", name)
	if res.code != 0 || !strings.Contains(res.stderr, "sent 1 of 1 lines to "+stack.QueueURL(devstack.ObservationQueueID)) {
		t.Fatalf("send --stack: %+v", res)
	}
	if res := runCLI(t, "", "state", "--stack", "no-such-stack", "--identity", "x"); res.code != 1 || !strings.Contains(res.stderr, "stack no-such-stack does not exist") {
		t.Fatalf("state with a missing stack: %+v", res)
	}
}

func TestHelpIsCompleteAndConsistent(t *testing.T) {
	res := runCLI(t, "", "--help")
	if res.code != 0 {
		t.Fatalf("--help: %+v", res)
	}
	for _, c := range commands() {
		if !strings.Contains(res.stdout, "\n  "+c.name+" ") {
			t.Errorf("attribution --help does not list %s:\n%s", c.name, res.stdout)
		}
		help := runCLI(t, "", c.name, "--help")
		if help.code != 0 || !strings.HasPrefix(help.stdout, "Usage: attribution "+c.name) || !strings.Contains(help.stdout, "\nFlags:\n") {
			t.Errorf("%s --help: %+v", c.name, help)
		}
	}
	for name, resources := range map[string][]resource{
		"send":     {observationQueue},
		"state":    {identitiesTable, statesTable},
		"rebuild":  {observationsTable, statesTable, eventBus},
		"bridge":   {observationQueue, publishBackQueue},
		"backfill": {observationQueue},
	} {
		help := runCLI(t, "", name, "--help").stdout
		for _, flagName := range []string{"-stack", "-region", "-endpoint-url"} {
			if !strings.Contains(help, "\n  "+flagName+" ") {
				t.Errorf("%s --help lacks %s", name, flagName)
			}
		}
		for _, r := range resources {
			if !strings.Contains(help, "--"+r.flag+", $"+r.env+", output "+r.output) || !strings.Contains(help, "\n  -"+r.flag+" ") {
				t.Errorf("%s --help does not explain %s", name, r.label)
			}
		}
	}
	if res := runCLI(t, "", "state", "--no-such-flag"); res.code != 2 {
		t.Errorf("unknown flag: %+v", res)
	}
}
