package templatetest_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// mustRepoRoot returns the repository root, found relative to this file so
// the tests work from any working directory.
func mustRepoRoot(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("locate test source file: runtime.Caller failed")
	}
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		tb.Fatalf("repository root %s: %v", root, err)
	}
	return root
}

func TestTemplateLint(t *testing.T) {
	t.Parallel()
	root := mustRepoRoot(t)
	cfnLint, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Fatalf("cfn-lint is required to check template.yaml (pip install cfn-lint): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Informational and experimental checks are included: the template must
	// be clean under all of them, not only under the default set.
	cmd := exec.CommandContext(ctx, cfnLint, "--include-checks", "I", "--include-experimental", "--", "template.yaml")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("cfn-lint template.yaml: %v\n%s", err, out)
	}
}

// mustLoadTemplate parses template.yaml into plain maps, lists and scalars,
// turning CloudFormation short-form tags (!Ref, !GetAtt, !If, ...) into their
// long form ({"Ref": ...}, {"Fn::GetAtt": ...}). It is not goformation's
// reader (which devstack uses): that one drops !Contains, the function of
// every rule, and reads YAML numbers as floats where these checks compare
// the values as written.
func mustLoadTemplate(tb testing.TB) map[string]any {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(mustRepoRoot(tb), "template.yaml"))
	if err != nil {
		tb.Fatalf("read template: %v", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		tb.Fatalf("parse template: %v", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		tb.Fatalf("parse template: expected one YAML document")
	}
	v, err := cfnValue(doc.Content[0])
	if err != nil {
		tb.Fatalf("parse template: %v", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		tb.Fatalf("parse template: top level is %T, want a mapping", v)
	}
	return m
}

func cfnValue(n *yaml.Node) (any, error) {
	var v any
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			val, err := cfnValue(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[n.Content[i].Value] = val
		}
		v = m
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			val, err := cfnValue(c)
			if err != nil {
				return nil, err
			}
			l = append(l, val)
		}
		v = l
	case yaml.ScalarNode:
		if err := n.Decode(&v); err != nil {
			// Tagged scalars (!Ref Name) do not decode as a YAML type.
			v = n.Value
		}
	case yaml.AliasNode:
		return cfnValue(n.Alias)
	default:
		return nil, fmt.Errorf("line %d: unexpected YAML node kind %v", n.Line, n.Kind)
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		name := strings.TrimPrefix(n.Tag, "!")
		if name == "GetAtt" {
			if s, ok := v.(string); ok {
				v = strings.SplitN(s, ".", 2)
			}
		}
		if name != "Ref" && name != "Condition" {
			name = "Fn::" + name
		}
		return map[string]any{name: v}, nil
	}
	return v, nil
}

// lookup walks a path of mapping keys.
func lookup(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func TestTemplateContract(t *testing.T) {
	tpl := mustLoadTemplate(t)
	resources, _ := tpl["Resources"].(map[string]any)
	if len(resources) == 0 {
		t.Fatal("template has no Resources")
	}

	t.Run("resource types", func(t *testing.T) {
		want := map[string]string{
			"IdentitiesTable":            "AWS::DynamoDB::Table",
			"ObservationsTable":          "AWS::DynamoDB::Table",
			"StatesTable":                "AWS::DynamoDB::Table",
			"ObservationQueue":           "AWS::SQS::Queue",
			"ObservationDeadLetterQueue": "AWS::SQS::Queue",
			"AttributionBus":             "AWS::Events::EventBus",
			"AlertRule":                  "AWS::Events::Rule",
			"AlertTopic":                 "AWS::SNS::Topic",
			"AlertRuleDeadLetterQueue":   "AWS::SQS::Queue",
			"AttributionFunction":        "AWS::Serverless::Function",
		}
		for id, typ := range want {
			if got := lookup(resources, id, "Type"); got != typ {
				t.Errorf("%s: Type = %v, want %s", id, got, typ)
			}
		}
	})

	t.Run("tables", func(t *testing.T) {
		tests := []struct {
			id        string
			hash      string
			rangeKey  string
			ttl       string
			retention string
		}{
			{id: "IdentitiesTable", hash: "attacker_uuid"},
			{id: "ObservationsTable", hash: "series", rangeKey: "evidence_ref", ttl: "expires_at"},
			{id: "StatesTable", hash: "identity_uuid", rangeKey: "primitive"},
		}
		for _, tt := range tests {
			t.Run(tt.id, func(t *testing.T) {
				table := lookup(resources, tt.id)
				props := lookup(table, "Properties")
				keys := map[string]string{}
				for _, k := range asList(lookup(props, "KeySchema")) {
					keys[fmt.Sprint(lookup(k, "KeyType"))] = fmt.Sprint(lookup(k, "AttributeName"))
				}
				wantKeys := map[string]string{"HASH": tt.hash}
				if tt.rangeKey != "" {
					wantKeys["RANGE"] = tt.rangeKey
				}
				if fmt.Sprint(keys) != fmt.Sprint(wantKeys) {
					t.Errorf("KeySchema = %v, want %v", keys, wantKeys)
				}
				for _, def := range asList(lookup(props, "AttributeDefinitions")) {
					if lookup(def, "AttributeType") != "S" {
						t.Errorf("attribute %v: type %v, want S", lookup(def, "AttributeName"), lookup(def, "AttributeType"))
					}
				}
				checks := []struct {
					path []string
					want any
				}{
					{[]string{"Properties", "BillingMode"}, "PAY_PER_REQUEST"},
					{[]string{"Properties", "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled"}, true},
					{[]string{"Properties", "SSESpecification", "SSEEnabled"}, true},
					{[]string{"DeletionPolicy"}, "Retain"},
					{[]string{"UpdateReplacePolicy"}, "Retain"},
				}
				for _, c := range checks {
					if got := lookup(table, c.path...); got != c.want {
						t.Errorf("%s = %v, want %v", strings.Join(c.path, "."), got, c.want)
					}
				}
				gotTTL := lookup(props, "TimeToLiveSpecification", "AttributeName")
				if tt.ttl == "" && gotTTL != nil {
					t.Errorf("unexpected TTL attribute %v", gotTTL)
				}
				if tt.ttl != "" && (gotTTL != tt.ttl || lookup(props, "TimeToLiveSpecification", "Enabled") != true) {
					t.Errorf("TTL attribute = %v, want %s enabled", gotTTL, tt.ttl)
				}
			})
		}
	})

	t.Run("function environment", func(t *testing.T) {
		vars, _ := lookup(resources, "AttributionFunction", "Properties", "Environment", "Variables").(map[string]any)
		want := []string{
			"IDENTITIES_TABLE", "OBSERVATIONS_TABLE", "STATES_TABLE", "EVENT_BUS_NAME",
			"DEAD_LETTER_QUEUE_URL", "ATTRIBUTION_CONCURRENCY",
			"OBSERVATION_TTL_DAYS", "ATTRIBUTION_REGISTRY",
			"ATTRIBUTION_WINDOW", "ATTRIBUTION_MIN_OBSERVATIONS", "ATTRIBUTION_CATEGORICAL_MAJORITY",
			"ATTRIBUTION_NUMERIC_ALPHA", "ATTRIBUTION_NUMERIC_STABLE_CV", "ATTRIBUTION_NUMERIC_DRIFT_SHIFT",
			"ATTRIBUTION_NUMERIC_CONFLICT_CV", "ATTRIBUTION_HASH_MAX_ROTATIONS", "ATTRIBUTION_HASH_WINDOW_SECONDS",
			"ATTRIBUTION_MULTI_ACTOR_CONFIDENCE_CAP", "ATTRIBUTION_MULTI_ACTOR_MIN_PRIMITIVES",
			"AWS_ENDPOINT_URL",
		}
		var got []string
		for k := range vars {
			got = append(got, k)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("environment variables\n got %v\nwant %v", got, want)
		}
		refs := map[string]string{
			"IDENTITIES_TABLE":   "IdentitiesTable",
			"OBSERVATIONS_TABLE": "ObservationsTable",
			"STATES_TABLE":       "StatesTable",
			"EVENT_BUS_NAME":     "AttributionBus",
			// Invalid messages are sent to the queue's own dead-letter queue.
			"DEAD_LETTER_QUEUE_URL": "ObservationDeadLetterQueue",
		}
		for name, id := range refs {
			if got := lookup(vars, name, "Ref"); got != id {
				t.Errorf("%s = Ref %v, want Ref %s", name, got, id)
			}
		}
	})

	t.Run("threshold defaults", func(t *testing.T) {
		// The defaults of the reference engine (SPEC.md, Thresholds).
		want := map[string]string{
			"AttributionWindow":                  "5",
			"AttributionMinObservations":         "3",
			"AttributionCategoricalMajority":     "4",
			"AttributionNumericAlpha":            "0.3",
			"AttributionNumericStableCv":         "0.2",
			"AttributionNumericDriftShift":       "0.3",
			"AttributionNumericConflictCv":       "1",
			"AttributionHashMaxRotations":        "2",
			"AttributionHashWindowSeconds":       "86400",
			"AttributionMultiActorConfidenceCap": "0.6",
			"AttributionMultiActorMinPrimitives": "2",
			"ObservationTtlDays":                 "0",
		}
		for param, def := range want {
			if got := fmt.Sprint(lookup(tpl, "Parameters", param, "Default")); got != def {
				t.Errorf("%s default = %s, want %s", param, got, def)
			}
		}
	})

	t.Run("event source", func(t *testing.T) {
		fn := lookup(resources, "AttributionFunction", "Properties")
		checks := []struct {
			path []string
			want string
		}{
			{[]string{"Runtime"}, "provided.al2023"},
			{[]string{"Handler"}, "bootstrap"},
			{[]string{"Architectures"}, "[arm64]"},
			{[]string{"LoggingConfig", "LogFormat"}, "JSON"},
			{[]string{"Events", "Observations", "Type"}, "SQS"},
			{[]string{"Events", "Observations", "Properties", "Queue", "Fn::GetAtt"}, "[ObservationQueue Arn]"},
			{[]string{"Events", "Observations", "Properties", "FunctionResponseTypes"}, "[ReportBatchItemFailures]"},
		}
		for _, c := range checks {
			if got := fmt.Sprint(lookup(fn, c.path...)); got != c.want {
				t.Errorf("%s = %s, want %s", strings.Join(c.path, "."), got, c.want)
			}
		}
		if got := lookup(resources, "AttributionFunction", "Metadata", "BuildMethod"); got != "makefile" {
			t.Errorf("Metadata.BuildMethod = %v, want makefile", got)
		}
		dlq := fmt.Sprint(lookup(resources, "ObservationQueue", "Properties", "RedrivePolicy", "deadLetterTargetArn", "Fn::GetAtt"))
		if dlq != "[ObservationDeadLetterQueue Arn]" {
			t.Errorf("ObservationQueue dead-letter target = %s", dlq)
		}
	})

	t.Run("visibility timeout is six function timeouts", func(t *testing.T) {
		allowed := asList(lookup(tpl, "Parameters", "FunctionTimeout", "AllowedValues"))
		if len(allowed) == 0 {
			t.Fatal("FunctionTimeout has no AllowedValues")
		}
		for _, a := range allowed {
			timeout := fmt.Sprint(a)
			got := fmt.Sprint(lookup(tpl, "Mappings", "VisibilityTimeouts", timeout, "Seconds"))
			var seconds int
			if _, err := fmt.Sscan(timeout, &seconds); err != nil {
				t.Fatalf("timeout %q: %v", timeout, err)
			}
			if want := fmt.Sprint(6 * seconds); got != want {
				t.Errorf("VisibilityTimeouts[%s] = %s, want %s", timeout, got, want)
			}
		}
	})

	t.Run("alert rule", func(t *testing.T) {
		rule := lookup(resources, "AlertRule", "Properties")
		if got := fmt.Sprint(lookup(rule, "EventPattern", "source")); got != "[decnet.attribution]" {
			t.Errorf("EventPattern.source = %s", got)
		}
		targets := asList(lookup(rule, "Targets"))
		if len(targets) != 1 {
			t.Fatalf("AlertRule has %d targets, want 1", len(targets))
		}
		if got := lookup(targets[0], "Arn", "Ref"); got != "AlertTopic" {
			t.Errorf("target = Ref %v, want Ref AlertTopic", got)
		}
		if got := fmt.Sprint(lookup(targets[0], "DeadLetterConfig", "Arn", "Fn::GetAtt")); got != "[AlertRuleDeadLetterQueue Arn]" {
			t.Errorf("target dead-letter queue = %s", got)
		}
		if lookup(targets[0], "RetryPolicy") == nil {
			t.Error("target has no RetryPolicy")
		}
	})

	t.Run("no wildcard grants", func(t *testing.T) {
		statements := 0
		walkStatements(resources, func(where string, st map[string]any) {
			statements++
			if st["Effect"] != "Allow" {
				return
			}
			for _, field := range []string{"Action", "Resource", "NotAction", "NotResource"} {
				for _, v := range asList(st[field]) {
					if s, ok := v.(string); ok && (s == "*" || (field == "Action" && strings.HasSuffix(s, ":*"))) {
						t.Errorf("%s: Allow statement with %s %q", where, field, s)
					}
				}
			}
			if p, ok := st["Principal"].(string); ok && p == "*" {
				t.Errorf("%s: Allow statement with Principal \"*\"", where)
			}
		})
		if statements < 8 {
			t.Errorf("found %d policy statements; the walk is missing some", statements)
		}
	})
}

func asList(v any) []any {
	switch l := v.(type) {
	case []any:
		return l
	case nil:
		return nil
	default:
		return []any{v}
	}
}

// walkStatements calls fn for every IAM-style policy statement in v,
// including statements chosen by Fn::If.
func walkStatements(v any, fn func(where string, st map[string]any)) {
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if k == "Statement" {
					for _, st := range asList(c) {
						for _, s := range unwrapIf(st) {
							if m, ok := s.(map[string]any); ok && m["Effect"] != nil {
								fn(where, m)
							}
						}
					}
					continue
				}
				walk(where+"."+k, c)
			}
		case []any:
			for i, c := range x {
				walk(fmt.Sprintf("%s[%d]", where, i), c)
			}
		}
	}
	walk("Resources", v)
}

// unwrapIf returns both branches of an Fn::If, or v itself.
func unwrapIf(v any) []any {
	m, ok := v.(map[string]any)
	if !ok {
		return []any{v}
	}
	args, ok := m["Fn::If"].([]any)
	if !ok || len(args) != 3 {
		return []any{v}
	}
	return append(unwrapIf(args[1]), unwrapIf(args[2])...)
}

// The bridge's managed policy allows exactly what `attribution bridge`
// calls: SendMessage (SendMessageBatch's permission) on the observation
// queue, and with publish-back ReceiveMessage and DeleteMessage on its
// queue; the publish-back resources exist only with PublishBackToDecnet.
func TestDecnetBridgeResources(t *testing.T) {
	tpl := mustLoadTemplate(t)
	resources, _ := tpl["Resources"].(map[string]any)

	if got := lookup(tpl, "Parameters", "PublishBackToDecnet", "Default"); got != "false" {
		t.Errorf("PublishBackToDecnet default = %v, want false (opt-in)", got)
	}
	for _, id := range []string{"PublishBackQueue", "PublishBackDeadLetterQueue", "PublishBackQueuePolicy", "PublishBackRule"} {
		if got := lookup(resources, id, "Condition"); got != "HasPublishBack" {
			t.Errorf("%s: Condition = %v, want HasPublishBack", id, got)
		}
	}
	if got := fmt.Sprint(lookup(resources, "PublishBackRule", "Properties", "EventPattern", "detail-type")); got != "[attribution.profile.state_changed attribution.profile.multi_actor_suspected]" {
		t.Errorf("PublishBackRule detail-type = %s", got)
	}
	if got := fmt.Sprint(lookup(resources, "PublishBackRule", "Properties", "Targets")); !strings.Contains(got, "PublishBackQueue Arn") {
		t.Errorf("PublishBackRule targets = %s, want the publish-back queue", got)
	}

	if got := lookup(resources, "DecnetBridgePolicy", "Type"); got != "AWS::IAM::ManagedPolicy" {
		t.Fatalf("DecnetBridgePolicy: Type = %v", got)
	}
	type grant struct{ actions, resource string }
	var grants []grant
	walkStatements(lookup(resources, "DecnetBridgePolicy"), func(where string, st map[string]any) {
		if st["Effect"] != "Allow" {
			t.Errorf("%s: unexpected %v statement", where, st["Effect"])
			return
		}
		var actions []string
		for _, a := range asList(st["Action"]) {
			actions = append(actions, fmt.Sprint(a))
		}
		slices.Sort(actions)
		grants = append(grants, grant{strings.Join(actions, ","), fmt.Sprint(st["Resource"])})
	})
	want := []grant{
		{"sqs:SendMessage", "map[Fn::GetAtt:[ObservationQueue Arn]]"},
		{"sqs:DeleteMessage,sqs:ReceiveMessage", "map[Fn::GetAtt:[PublishBackQueue Arn]]"},
	}
	if fmt.Sprint(grants) != fmt.Sprint(want) {
		t.Errorf("DecnetBridgePolicy grants\n got %v\nwant %v", grants, want)
	}
	outputs, _ := tpl["Outputs"].(map[string]any)
	if got := lookup(outputs, "DecnetBridgePolicyArn", "Value", "Ref"); got != "DecnetBridgePolicy" {
		t.Errorf("output DecnetBridgePolicyArn = %v", got)
	}
	if got := lookup(outputs, "PublishBackQueueUrl", "Condition"); got != "HasPublishBack" {
		t.Errorf("output PublishBackQueueUrl condition = %v", got)
	}
}
