package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/smithy-go"

	"decnet-attribution/internal/attribution"
)

// resource is an AWS resource a command works on, and the three places
// its name comes from, in order: a flag, an environment variable (the
// function's own names), an output of the CloudFormation stack.
type resource struct {
	label  string // "states table"
	flag   string // "states-table"
	env    string // "STATES_TABLE"
	output string // "StatesTableName" (template.yaml Outputs)
	usage  string
}

var (
	identitiesTable = resource{
		"identities table", "identities-table", "IDENTITIES_TABLE", "IdentitiesTableName",
		"DynamoDB table of attacker identities"}
	observationsTable = resource{
		"observations table", "observations-table", "OBSERVATIONS_TABLE", "ObservationsTableName",
		"DynamoDB table of observations"}
	statesTable = resource{
		"states table", "states-table", "STATES_TABLE", "StatesTableName",
		"DynamoDB table of states"}
	observationQueue = resource{
		"observation queue", "queue-url", "OBSERVATION_QUEUE_URL", "ObservationQueueUrl",
		"URL of the observation queue"}
	eventBus = resource{
		"event bus", "event-bus", "EVENT_BUS_NAME", "AttributionBusName",
		"name of the attribution event bus"}
)

// awsFlags are the AWS settings a command takes: the stack, the endpoint,
// the region, and the names of the resources it uses.
type awsFlags struct {
	stack       string
	endpointURL string
	region      string
	resources   []resource
	names       map[string]*string // flag values, by resource flag
	// describeStacks is replaced in tests; nil means the SDK client.
	describeStacks func(ctx context.Context, cfg aws.Config, stack string) (map[string]string, error)
}

// addAWSFlags registers the shared AWS flags and one flag per resource.
func addAWSFlags(fs *flag.FlagSet, resources ...resource) *awsFlags {
	f := &awsFlags{resources: resources, names: map[string]*string{}}
	for _, r := range resources {
		f.names[r.flag] = fs.String(r.flag, "", fmt.Sprintf("%s (default: $%s, else the stack's %s output)", r.usage, r.env, r.output))
	}
	fs.StringVar(&f.stack, "stack", "", "CloudFormation stack whose outputs name the resources not given by flag or environment")
	fs.StringVar(&f.region, "region", "", "AWS region (default: the SDK's: $AWS_REGION, the profile)")
	fs.StringVar(&f.endpointURL, "endpoint-url", "", "AWS endpoint for every service, e.g. a local stack (default: the SDK's: $AWS_ENDPOINT_URL)")
	return f
}

// awsHelp is the paragraph of a command's help that says where the
// resources' names come from.
func awsHelp(resources ...resource) string {
	var b strings.Builder
	b.WriteString(`AWS resources are named by a flag, else by an environment variable, else
by an output of the CloudFormation stack given with --stack:
`)
	for _, r := range resources {
		fmt.Fprintf(&b, "  %-20s --%s, $%s, output %s\n", r.label, r.flag, r.env, r.output)
	}
	b.WriteString(`Credentials and region come from the AWS SDK's usual sources (AWS_PROFILE,
AWS_REGION, ...). --endpoint-url, or the SDK's AWS_ENDPOINT_URL, points every
call at a local stack (moto, LocalStack).
`)
	return b.String()
}

// awsSetup is a command's AWS configuration with its resources resolved.
type awsSetup struct {
	cfg   aws.Config
	names map[string]string // by resource flag; "" when not found
}

// name returns the resolved name of a resource.
func (s *awsSetup) name(r resource) string { return s.names[r.flag] }

// resolve loads the AWS configuration and finds each resource's name.
// The resources in required must be found; the others may stay empty.
func (f *awsFlags) resolve(ctx context.Context, lookup func(string) (string, bool), required ...resource) (*awsSetup, error) {
	var opts []func(*config.LoadOptions) error
	if f.region != "" {
		opts = append(opts, config.WithRegion(f.region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if f.endpointURL != "" {
		cfg.BaseEndpoint = aws.String(f.endpointURL)
	}
	if cfg.Region == "" {
		return nil, errors.New("region: not set; pass --region, set AWS_REGION, or give the AWS profile a region")
	}
	setup := &awsSetup{cfg: cfg, names: map[string]string{}}
	var fromStack []resource
	for _, r := range f.resources {
		if v := *f.names[r.flag]; v != "" {
			setup.names[r.flag] = v
		} else if v, _ := lookup(r.env); v != "" {
			setup.names[r.flag] = v
		} else {
			fromStack = append(fromStack, r)
		}
	}
	if len(fromStack) > 0 && f.stack != "" {
		describe := f.describeStacks
		if describe == nil {
			describe = stackOutputs
		}
		outputs, err := describe(ctx, cfg, f.stack)
		if err != nil {
			return nil, err
		}
		for _, r := range fromStack {
			setup.names[r.flag] = outputs[r.output]
		}
	}
	var errs []error
	for _, r := range required {
		if setup.names[r.flag] != "" {
			continue
		}
		if f.stack != "" {
			errs = append(errs, fmt.Errorf("%s: stack %s has no output %s; pass --%s or set %s", r.label, f.stack, r.output, r.flag, r.env))
		} else {
			errs = append(errs, fmt.Errorf("%s: not set; pass --%s, set %s or --stack", r.label, r.flag, r.env))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return setup, nil
}

// describeStacksAPI is the part of the CloudFormation client stackOutputs
// uses.
type describeStacksAPI interface {
	DescribeStacks(ctx context.Context, in *cloudformation.DescribeStacksInput, optFns ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error)
}

var _ describeStacksAPI = (*cloudformation.Client)(nil)

func stackOutputs(ctx context.Context, cfg aws.Config, stack string) (map[string]string, error) {
	return readStackOutputs(ctx, cloudformation.NewFromConfig(cfg), stack)
}

// readStackOutputs returns a stack's outputs by key.
func readStackOutputs(ctx context.Context, client describeStacksAPI, stack string) (map[string]string, error) {
	out, err := client.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(stack)})
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorCode() == "ValidationError" && strings.Contains(api.ErrorMessage(), "does not exist") {
		return nil, fmt.Errorf("stack %s does not exist (check the name, the region and the endpoint)", stack)
	}
	if err != nil {
		return nil, fmt.Errorf("describe stack %s: %w", stack, err)
	}
	if len(out.Stacks) == 0 {
		return nil, fmt.Errorf("stack %s does not exist", stack)
	}
	outputs := map[string]string{}
	for _, o := range out.Stacks[0].Outputs {
		outputs[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	return outputs, nil
}

// registryFrom is the primitive registry: the built-in one with the
// overrides of --registry FILE, else of $ATTRIBUTION_REGISTRY (inline
// JSON, as the function reads it).
func registryFrom(path string, lookup func(string) (string, bool)) (attribution.Registry, error) {
	if path != "" {
		return loadRegistry(path)
	}
	raw, _ := lookup("ATTRIBUTION_REGISTRY")
	if raw == "" {
		return attribution.BuiltinRegistry(), nil
	}
	reg, err := attribution.BuiltinRegistry().WithOverrides([]byte(raw))
	if err != nil {
		return nil, fmt.Errorf("ATTRIBUTION_REGISTRY: %w", err)
	}
	return reg, nil
}

// stderrIsTerminal reports whether w is a terminal, for progress bars.
func stderrIsTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
