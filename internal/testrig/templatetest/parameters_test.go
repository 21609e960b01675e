package templatetest_test

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"unicode/utf8"

	"decnet-attribution/internal/config"
)

// The template's parameters are checked by CloudFormation; the function
// checks the environment they become at every cold start. A value the
// first accepts and the second refuses deploys fine and then fails every
// invocation. These tests run the template's own constraints and Rules,
// and the function's own configuration check, over the boundary values.

// cfnParams is the template's Parameters section.
func cfnParams(tpl map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for name, def := range tpl["Parameters"].(map[string]any) {
		out[name] = def.(map[string]any)
	}
	return out
}

// defaults are the parameter values of a deploy that overrides nothing.
func defaults(tpl map[string]any) map[string]string {
	vals := map[string]string{}
	for name, def := range cfnParams(tpl) {
		if d, ok := def["Default"]; ok {
			vals[name] = scalar(d)
		}
	}
	return vals
}

func scalar(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return fmt.Sprint(x)
	}
}

func number(v any) float64 {
	f, err := strconv.ParseFloat(scalar(v), 64)
	if err != nil {
		panic(fmt.Sprintf("not a number: %v", v))
	}
	return f
}

// cfnCheck is what CloudFormation checks before creating anything: each
// parameter's constraints, then every rule's assertions.
func cfnCheck(tpl map[string]any, vals map[string]string) error {
	if err := cfnParamCheck(tpl, vals); err != nil {
		return err
	}
	return cfnRulesCheck(tpl, vals)
}

func cfnParamCheck(tpl map[string]any, vals map[string]string) error {
	for name, def := range cfnParams(tpl) {
		v, ok := vals[name]
		if !ok {
			return fmt.Errorf("%s: no value", name)
		}
		if allowed, ok := def["AllowedValues"].([]any); ok && !slices.ContainsFunc(allowed, func(a any) bool { return scalar(a) == v }) {
			return fmt.Errorf("%s: %q not among the allowed values", name, v)
		}
		switch def["Type"] {
		case "Number":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return fmt.Errorf("%s: %q is not a number", name, v)
			}
			if m, ok := def["MinValue"]; ok && f < number(m) {
				return fmt.Errorf("%s: %v below MinValue", name, v)
			}
			if m, ok := def["MaxValue"]; ok && f > number(m) {
				return fmt.Errorf("%s: %v above MaxValue", name, v)
			}
		case "String":
			if m, ok := def["MaxLength"]; ok && utf8.RuneCountInString(v) > int(number(m)) {
				return fmt.Errorf("%s: longer than MaxLength", name)
			}
			if p, ok := def["AllowedPattern"].(string); ok && !regexp.MustCompile("^(?:"+p+")$").MatchString(v) {
				return fmt.Errorf("%s: %q does not match AllowedPattern", name, v)
			}
		}
	}
	return nil
}

func cfnRulesCheck(tpl map[string]any, vals map[string]string) error {
	rules, _ := tpl["Rules"].(map[string]any)
	for name, r := range rules {
		rule := r.(map[string]any)
		if c, ok := rule["RuleCondition"]; ok {
			holds, err := ruleBool(c, vals)
			if err != nil {
				return fmt.Errorf("rule %s: %w", name, err)
			}
			if !holds {
				continue
			}
		}
		for _, a := range rule["Assertions"].([]any) {
			ok, err := ruleBool(a.(map[string]any)["Assert"], vals)
			if err != nil {
				return fmt.Errorf("rule %s: %w", name, err)
			}
			if !ok {
				return fmt.Errorf("rule %s: %s", name, a.(map[string]any)["AssertDescription"])
			}
		}
	}
	return nil
}

// ruleValue evaluates the rule functions this template uses. goformation's
// processor has no Fn::Contains, and running it for each of the thousands
// of parameter combinations below made these tests ten times slower.
func ruleValue(v any, vals map[string]string) (any, error) {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := ruleValue(e, vals)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case map[string]any:
		if len(x) != 1 {
			return nil, fmt.Errorf("not a function: %v", x)
		}
		for fn, arg := range x {
			if fn == "Ref" {
				v, ok := vals[arg.(string)]
				if !ok {
					return nil, fmt.Errorf("Ref %v: not a parameter", arg)
				}
				return v, nil
			}
			args, err := ruleValue(arg, vals)
			if err != nil {
				return nil, err
			}
			list, _ := args.([]any)
			switch fn {
			case "Fn::Equals":
				return scalar(list[0]) == scalar(list[1]), nil
			case "Fn::Not":
				return !list[0].(bool), nil
			case "Fn::And", "Fn::Or":
				and := fn == "Fn::And"
				for _, c := range list {
					if c.(bool) != and {
						return !and, nil
					}
				}
				return and, nil
			case "Fn::Contains":
				return slices.ContainsFunc(list[0].([]any), func(e any) bool { return scalar(e) == scalar(list[1]) }), nil
			}
			return nil, fmt.Errorf("%s: not evaluated by this test", fn)
		}
	}
	return v, nil
}

func ruleBool(v any, vals map[string]string) (bool, error) {
	r, err := ruleValue(v, vals)
	if err != nil {
		return false, err
	}
	b, ok := r.(bool)
	if !ok {
		return false, fmt.Errorf("%v is not a condition", v)
	}
	return b, nil
}

// functionEnv is the function's environment for the parameter values:
// a parameter's value where the template refers to one, the resource's
// logical ID where it refers to a resource, AWS::NoValue dropped.
func functionEnv(t *testing.T, tpl map[string]any, vals map[string]string) map[string]string {
	t.Helper()
	vars := lookup(tpl, "Resources", "AttributionFunction", "Properties", "Environment", "Variables").(map[string]any)
	env := map[string]string{}
	var resolve func(v any) (string, bool)
	resolve = func(v any) (string, bool) {
		m, ok := v.(map[string]any)
		if !ok {
			return scalar(v), true
		}
		if ref, ok := m["Ref"].(string); ok {
			if ref == "AWS::NoValue" {
				return "", false
			}
			if p, ok := vals[ref]; ok {
				return p, true
			}
			return ref, true
		}
		if args, ok := m["Fn::If"].([]any); ok {
			holds, err := ruleBool(lookup(tpl, "Conditions", args[0].(string)), vals)
			if err != nil {
				t.Fatalf("condition %v: %v", args[0], err)
			}
			if holds {
				return resolve(args[1])
			}
			return resolve(args[2])
		}
		t.Fatalf("environment value %v: not resolved by this test", v)
		return "", false
	}
	for k, v := range vars {
		if s, ok := resolve(v); ok {
			env[k] = s
		}
	}
	return env
}

// functionCheck is the function's own configuration check at cold start.
func functionCheck(t *testing.T, tpl map[string]any, vals map[string]string) error {
	env := functionEnv(t, tpl, vals)
	_, err := config.FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	return err
}

// TestParameterBoundaries: every value at or just outside a bound of a
// parameter the function reads is either refused by the template or
// accepted by the function.
func TestParameterBoundaries(t *testing.T) {
	tpl := mustLoadTemplate(t)
	base := defaults(tpl)
	if err := cfnCheck(tpl, base); err != nil {
		t.Fatalf("defaults refused by the template: %v", err)
	}
	if err := functionCheck(t, tpl, base); err != nil {
		t.Fatalf("defaults refused by the function: %v", err)
	}
	walked := 0
	for _, name := range functionEnvRefs(tpl) {
		def := cfnParams(tpl)[name]
		var values []string
		switch {
		case def["Type"] == "Number":
			// Bounds, just outside them by a unit and by a hair, and a
			// fraction between.
			for _, bound := range []string{"MinValue", "MaxValue"} {
				if b, ok := def[bound]; ok {
					f := number(b)
					for _, v := range []float64{f, f - 1, f + 1, f - 1e-6, f + 1e-6, f + 0.5} {
						values = append(values, strconv.FormatFloat(v, 'f', -1, 64))
					}
				}
			}
		case def["AllowedPattern"] != nil:
			// A whole number range written as a pattern: every number
			// around it, and the spellings a Number would let through.
			for n := -2; n <= 1002; n++ {
				values = append(values, strconv.Itoa(n))
			}
			values = append(values, "17", "18", "36499", "36500", "36501", "100000",
				"1.5", "5.0", "05", "1e1", " 5", "+5", "")
		default:
			continue // strings the function parses itself (the registry)
		}
		for _, a := range asList(def["AllowedValues"]) {
			values = append(values, scalar(a))
		}
		accepted := 0
		for _, v := range values {
			vals := maps(base)
			vals[name] = v
			if cfnCheck(tpl, vals) != nil {
				continue
			}
			accepted++
			if err := functionCheck(t, tpl, vals); err != nil {
				t.Errorf("%s=%q: the template accepts it, the function refuses it: %v", name, v, err)
			}
		}
		walked += accepted
		if accepted == 0 {
			t.Errorf("%s: the template accepts none of the values walked", name)
		}
		for _, bound := range []string{"MinValue", "MaxValue"} {
			if b, ok := def[bound]; ok {
				vals := maps(base)
				vals[name] = scalar(b)
				if err := cfnParamCheck(tpl, vals); err != nil {
					t.Errorf("%s=%s (its %s) refused by the template: %v", name, vals[name], bound, err)
				}
			}
		}
	}
	if walked < 100 {
		t.Fatalf("only %d accepted values walked; the walk is missing parameters", walked)
	}
}

// functionEnvRefs are the parameters the function's environment refers
// to, sorted.
func functionEnvRefs(tpl map[string]any) []string {
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if r, ok := x["Ref"].(string); ok {
				if _, isParam := cfnParams(tpl)[r]; isParam {
					refs = append(refs, r)
				}
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(lookup(tpl, "Resources", "AttributionFunction", "Properties", "Environment", "Variables"))
	slices.Sort(refs)
	return slices.Compact(refs)
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestMajorityWithinWindow: the template's rules refuse exactly the
// (window, majority) pairs the function refuses.
func TestMajorityWithinWindow(t *testing.T) {
	tpl := mustLoadTemplate(t)
	base := defaults(tpl)
	for w := 0; w <= 52; w++ {
		for m := 0; m <= 52; m++ {
			vals := maps(base)
			vals["AttributionWindow"], vals["AttributionCategoricalMajority"] = strconv.Itoa(w), strconv.Itoa(m)
			cfnErr, fnErr := cfnCheck(tpl, vals), functionCheck(t, tpl, vals)
			if (cfnErr == nil) != (fnErr == nil) {
				t.Errorf("window %d, majority %d: template says %v, function says %v", w, m, cfnErr, fnErr)
			}
		}
	}
}

// retentionDays is a queue's MessageRetentionPeriod in days, rounded up.
func retentionDays(t *testing.T, tpl map[string]any, queue string) int {
	t.Helper()
	s := lookup(tpl, "Resources", queue, "Properties", "MessageRetentionPeriod")
	if s == nil {
		t.Fatalf("%s has no MessageRetentionPeriod", queue)
	}
	return int(math.Ceil(number(s) / 86400))
}

// TestObservationTtlCoversRedrive: the shortest TTL the template and the
// function accept covers a message's life in the observation queue plus
// its dead-letter queue, from the template's own retention periods.
func TestObservationTtlCoversRedrive(t *testing.T) {
	tpl := mustLoadTemplate(t)
	want := retentionDays(t, tpl, "ObservationQueue") + retentionDays(t, tpl, "ObservationDeadLetterQueue")
	if config.MinObservationTTLDays != want {
		t.Errorf("config.MinObservationTTLDays = %d, want %d (queue + dead-letter queue retention)", config.MinObservationTTLDays, want)
	}
	base := defaults(tpl)
	for days := 0; days <= want+5; days++ {
		vals := maps(base)
		vals["ObservationTtlDays"] = strconv.Itoa(days)
		cfnErr, fnErr := cfnCheck(tpl, vals), functionCheck(t, tpl, vals)
		wantOK := days == 0 || days >= want
		if (cfnErr == nil) != wantOK || (fnErr == nil) != wantOK {
			t.Errorf("ObservationTtlDays=%d: template says %v, function says %v; want accepted=%v", days, cfnErr, fnErr, wantOK)
		}
	}
}
