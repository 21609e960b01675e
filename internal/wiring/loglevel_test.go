package wiring_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"gopkg.in/yaml.v3"

	"decnet-attribution/internal/config"
	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/wiring"
)

// lambdaLevels are Lambda's application log levels, most verbose first.
var lambdaLevels = []string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}

// passesLambdaFilter applies Lambda's log-level filtering to one line of
// a JSON-format function: a line whose "level" is missing or invalid, or
// whose "timestamp" is not RFC 3339, counts as INFO; it reaches CloudWatch
// when its level is at or above the configured one.
func passesLambdaFilter(line []byte, configured string) bool {
	var fields map[string]any
	if json.Unmarshal(line, &fields) != nil {
		return slices.Index(lambdaLevels, "INFO") >= slices.Index(lambdaLevels, configured)
	}
	level, _ := fields["level"].(string)
	level = strings.ToUpper(level)
	ts, _ := fields["timestamp"].(string)
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || !slices.Contains(lambdaLevels, level) {
		level = "INFO"
	}
	return slices.Index(lambdaLevels, level) >= slices.Index(lambdaLevels, configured)
}

// TestMetricsPassEveryAllowedLogLevel: at every ApplicationLogLevel the
// template allows, the metric line the handler writes reaches CloudWatch
// (and with it every metric and the alarms built on them).
func TestMetricsPassEveryAllowedLogLevel(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(awstest.RepoRoot(t), "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var tpl struct {
		Parameters map[string]struct {
			AllowedValues []string `yaml:"AllowedValues"`
		} `yaml:"Parameters"`
	}
	if err := yaml.Unmarshal(raw, &tpl); err != nil {
		t.Fatal(err)
	}
	allowed := tpl.Parameters["ApplicationLogLevel"].AllowedValues
	if len(allowed) == 0 {
		t.Fatal("template: ApplicationLogLevel has no AllowedValues")
	}
	for _, level := range allowed {
		t.Run(level, func(t *testing.T) {
			env := map[string]string{
				"IDENTITIES_TABLE": "ids", "OBSERVATIONS_TABLE": "obs", "STATES_TABLE": "states", "EVENT_BUS_NAME": "bus",
				// Lambda sets it from LoggingConfig.ApplicationLogLevel.
				"AWS_LAMBDA_LOG_LEVEL": level,
			}
			cfg, err := config.FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			h, err := wiring.New(cfg, aws.Config{Region: "us-east-1"}, wiring.Options{MetricsOut: &out, FunctionName: "fn"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := h.Handle(context.Background(), events.SQSEvent{}); err != nil {
				t.Fatal(err)
			}
			line := bytes.TrimSpace(out.Bytes())
			if !bytes.Contains(line, []byte(`"CloudWatchMetrics"`)) {
				t.Fatalf("no metric line written: %q", line)
			}
			if !passesLambdaFilter(line, level) {
				t.Fatalf("at ApplicationLogLevel %s Lambda drops the metric line %s", level, line)
			}
		})
	}
}
