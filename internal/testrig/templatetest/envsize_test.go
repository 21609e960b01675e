package templatetest_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// lambdaEnvLimit is Lambda's limit on a function's environment: 4 KB,
// measured as the JSON of the whole variables map.
const lambdaEnvLimit = 4096

// envHeadroom is room kept under the limit for variables added later.
const envHeadroom = 256

// Longest values the template's references can take.
const (
	maxTableName  = 255 // DynamoDB table name
	maxQueueURL   = len("https://sqs.") + 20 + len(".amazonaws.com.cn/") + 12 + 1 + 80
	maxBusName    = 128 + len("-attribution") // stack name, then the suffix the template adds
	maxNumberText = 24                        // a number as the parameter was written: float64's longest shortest form
)

// worstValueLength is the longest text an environment value can have,
// from the template's own constraints, and how much JSON escaping can
// multiply it.
func worstValueLength(t *testing.T, tpl map[string]any, v any) (length, escape int) {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		return len(scalar(v)), 1
	}
	if args, ok := m["Fn::If"].([]any); ok {
		l1, e1 := worstValueLength(t, tpl, args[1])
		l2, e2 := worstValueLength(t, tpl, args[2])
		if l1*e1 >= l2*e2 {
			return l1, e1
		}
		return l2, e2
	}
	ref, _ := m["Ref"].(string)
	if ref == "AWS::NoValue" {
		return 0, 1
	}
	if def, ok := cfnParams(tpl)[ref]; ok {
		if p, ok := def["MaxLength"]; ok {
			// JSON of the registry: every quote and newline in it is
			// escaped to two bytes.
			return int(number(p)), 2
		}
		if def["Type"] == "Number" {
			return maxNumberText, 1
		}
		if _, ok := def["AllowedPattern"].(string); ok {
			n := 0
			for _, d := range []string{"MaxValue", "Default"} {
				n = max(n, len(scalar(def[d])))
			}
			return max(n, len("36500")), 1
		}
		t.Fatalf("parameter %s: no bound on its length", ref)
	}
	switch lookup(tpl, "Resources", ref, "Type") {
	case "AWS::DynamoDB::Table":
		return maxTableName, 1
	case "AWS::SQS::Queue":
		return maxQueueURL, 1
	case "AWS::Events::EventBus":
		return maxBusName, 1
	}
	t.Fatalf("environment value %v: no bound on its length", v)
	return 0, 0
}

// TestEnvironmentFitsLambdaLimit: with every value at its longest, the
// function's environment stays under Lambda's 4 KB with headroom, so no
// parameter value the template accepts fails the deploy.
func TestEnvironmentFitsLambdaLimit(t *testing.T) {
	tpl := mustLoadTemplate(t)
	vars := lookup(tpl, "Resources", "AttributionFunction", "Properties", "Environment", "Variables").(map[string]any)
	worst := map[string]string{}
	extra := 0 // bytes escaping adds
	for k, v := range vars {
		n, escape := worstValueLength(t, tpl, v)
		worst[k] = strings.Repeat("x", n)
		extra += n * (escape - 1)
	}
	b, err := json.Marshal(worst)
	if err != nil {
		t.Fatal(err)
	}
	size := len(b) + extra
	t.Logf("worst-case environment: %d bytes of %d (%d left)", size, lambdaEnvLimit, lambdaEnvLimit-size)
	if size > lambdaEnvLimit-envHeadroom {
		t.Fatalf("worst-case environment is %d bytes: over Lambda's %d less %d of headroom", size, lambdaEnvLimit, envHeadroom)
	}
}

// TestDefaultRegistryRoom: the registry's MaxLength leaves room for a
// useful set of overrides (the built-in catalogue covers the rest).
func TestDefaultRegistryRoom(t *testing.T) {
	tpl := mustLoadTemplate(t)
	maxLen := int(number(cfnParams(tpl)["AttributionRegistry"]["MaxLength"]))
	entry := `"operational.some_custom_primitive":"categorical",`
	if n := maxLen / len(entry); n < 20 {
		t.Fatalf("AttributionRegistry MaxLength %d holds %d overrides like %s; want at least 20", maxLen, n, entry)
	}
}
