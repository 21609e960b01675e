package templatetest_test

import (
	"context"
	"testing"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
)

// lambdaReserved are the environment variables Lambda sets itself and
// refuses in a function's configuration.
var lambdaReserved = []string{
	"_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
	"AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
	"AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
	"AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
}

// TestLocalEndpointIsDeclared: sam local invoke --env-vars overrides only
// declared variables, so AWS_ENDPOINT_URL is declared, empty; on Lambda
// the SDK then uses the regional endpoint.
func TestLocalEndpointIsDeclared(t *testing.T) {
	tpl := mustLoadTemplate(t)
	vars := lookup(tpl, "Resources", "AttributionFunction", "Properties", "Environment", "Variables").(map[string]any)
	if v, ok := vars["AWS_ENDPOINT_URL"]; !ok || v != "" {
		t.Fatalf("AWS_ENDPOINT_URL = %v (declared %v), want declared and empty", v, ok)
	}
	for _, k := range lambdaReserved {
		if _, ok := vars[k]; ok {
			t.Errorf("the function environment declares %s, which Lambda reserves", k)
		}
	}
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	cfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion("us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BaseEndpoint != nil {
		t.Fatalf("an empty AWS_ENDPOINT_URL gave the SDK the endpoint %q", *cfg.BaseEndpoint)
	}
}
