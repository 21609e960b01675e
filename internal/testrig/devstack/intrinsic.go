package devstack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/awslabs/goformation/v7/intrinsics"
)

// noValue is what Ref AWS::NoValue resolves to while goformation processes
// a value; the enclosing property or list element is then dropped.
const noValue = "\x00AWS::NoValue"

// evaluator resolves intrinsic functions with goformation's processor.
// goformation evaluates the conditions, Fn::If, Fn::And/Or/Not,
// Fn::FindInMap, Fn::Join, Fn::Select, Fn::Split, Fn::Base64 and Fn::GetAZs
// itself. What it cannot know, this stack's parameter values, pseudo
// parameters and resources, comes from the overrides below: Ref, Fn::GetAtt
// (it leaves both unresolved) and Fn::Sub (its own substitutes goformation's
// fixed pseudo parameters and drops what it cannot resolve). Its handlers
// answer nil for what they cannot resolve; the evaluator turns that into an
// error. Two limits of goformation's handlers that template.yaml does not
// meet: Fn::Join skips list items that are not strings, and Fn::Select
// cannot index the result of Fn::Split.
type evaluator struct {
	tmpl       *Template
	params     map[string]any // string, or []any for list-typed parameters
	pseudo     map[string]any
	conditions map[string]any // condition name → bool
	options    *intrinsics.ProcessorOptions
	err        error // first failure of a handler during one eval

	// ref and getAtt resolve references to resources.
	ref    func(logicalID string) (string, error)
	getAtt func(logicalID, attribute string) (string, error)
}

func newEvaluator(tmpl *Template, params map[string]string, pseudo map[string]any,
	ref func(string) (string, error), getAtt func(string, string) (string, error)) (*evaluator, error) {
	e := &evaluator{tmpl: tmpl, params: map[string]any{}, pseudo: pseudo, ref: ref, getAtt: getAtt}
	for name := range params {
		if _, ok := tmpl.Parameters[name]; !ok {
			return nil, fmt.Errorf("parameter %s is not declared by the template", name)
		}
	}
	for name, p := range tmpl.Parameters {
		value, ok := params[name]
		if !ok {
			if p.Default == nil {
				return nil, fmt.Errorf("parameter %s has no default and no value was given", name)
			}
			value = *p.Default
		}
		if p.Type == "CommaDelimitedList" || strings.HasPrefix(p.Type, "List<") {
			var list []any
			for _, s := range strings.Split(value, ",") {
				list = append(list, strings.TrimSpace(s))
			}
			e.params[name] = list
		} else {
			e.params[name] = value
		}
	}

	// CloudFormation compares the text of parameter values, so "5" equals
	// 5; goformation compares Go values.
	equals := func(name string, in, tmpl any) any {
		if args, ok := in.([]any); ok && len(args) == 2 {
			in = []any{textOrSelf(args[0]), textOrSelf(args[1])}
		}
		return intrinsics.FnEquals(name, in, tmpl)
	}
	overrides := map[string]intrinsics.IntrinsicHandler{
		"Ref":        e.handleRef,
		"Fn::GetAtt": e.handleGetAtt,
		"Fn::Sub":    e.handleSub,
	}
	for name, h := range map[string]intrinsics.IntrinsicHandler{
		"Fn::If": intrinsics.FnIf, "Fn::And": intrinsics.FnAnd, "Fn::Or": intrinsics.FnOr, "Fn::Not": intrinsics.FnNot,
		"Fn::FindInMap": intrinsics.FnFindInMap, "Fn::Join": intrinsics.FnJoin, "Fn::Select": intrinsics.FnSelect,
		"Fn::Split": intrinsics.FnSplit, "Fn::Base64": intrinsics.FnBase64, "Fn::GetAZs": intrinsics.FnGetAZs,
		"Fn::Equals": equals,
	} {
		overrides[name] = e.strict(h)
	}
	for _, name := range []string{"Fn::ImportValue", "Fn::Cidr", "Fn::Transform"} {
		overrides[name] = func(name string, _, _ any) any {
			e.fail(fmt.Errorf("intrinsic function %s is not supported locally", name))
			return nil
		}
	}
	e.options = &intrinsics.ProcessorOptions{IntrinsicHandlerOverrides: overrides, EvaluateConditions: true}

	// Conditions depend on parameters only: evaluate them all once.
	e.conditions = tmpl.Conditions
	evaluated, err := e.process(nil)
	if err != nil {
		return nil, fmt.Errorf("conditions: %w", err)
	}
	for name, v := range evaluated.Conditions {
		if _, ok := v.(bool); !ok {
			return nil, fmt.Errorf("condition %s does not evaluate to a boolean: %v", name, v)
		}
	}
	e.conditions = evaluated.Conditions
	return e, nil
}

type processed struct {
	Conditions map[string]any
	Value      any
}

// process runs goformation's processor over v, with the template's
// mappings and conditions beside it.
func (e *evaluator) process(v any) (out processed, err error) {
	doc, err := json.Marshal(map[string]any{"Mappings": e.tmpl.Mappings, "Conditions": e.conditions, "Value": v})
	if err != nil {
		return out, err
	}
	outer := e.err // process runs again inside a handler (Ref of a resource)
	e.err = nil
	defer func() {
		if r := recover(); r != nil { // goformation indexes arguments unchecked
			err = fmt.Errorf("malformed intrinsic function: %v", r)
		}
		e.err = outer
	}()
	result, err := intrinsics.ProcessJSON(doc, e.options)
	if err == nil {
		err = e.err
	}
	if err != nil {
		return out, err
	}
	dec := json.NewDecoder(bytes.NewReader(result))
	dec.UseNumber()
	err = dec.Decode(&out)
	return out, err
}

// eval resolves every intrinsic function in v. Map entries and list elements
// that evaluate to AWS::NoValue are dropped; v itself may evaluate to noValue.
func (e *evaluator) eval(v any) (any, error) {
	out, err := e.process(v)
	if err != nil {
		return nil, err
	}
	return settle(out.Value)
}

// settle drops what AWS::NoValue chose and refuses the functions goformation
// does not know, which it leaves in place as ordinary keys.
func settle(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		for k := range x {
			if len(x) == 1 && (k == "Ref" || strings.HasPrefix(k, "Fn::")) {
				return nil, fmt.Errorf("intrinsic function %s is not supported locally", k)
			}
		}
		for k, val := range x {
			r, err := settle(val)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			if r == noValue {
				delete(x, k)
			} else {
				x[k] = r
			}
		}
	case []any:
		out := x[:0]
		for i, val := range x {
			r, err := settle(val)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			if r != noValue {
				out = append(out, r)
			}
		}
		return out, nil
	}
	return v, nil
}

// condition returns the value of the named entry of the Conditions section.
func (e *evaluator) condition(name string) (bool, error) {
	v, ok := e.conditions[name].(bool)
	if !ok {
		return false, fmt.Errorf("condition %s is not defined", name)
	}
	return v, nil
}

func (e *evaluator) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// strict turns goformation's nil answer into an error.
func (e *evaluator) strict(h intrinsics.IntrinsicHandler) intrinsics.IntrinsicHandler {
	return func(name string, in, tmpl any) any {
		out := h(name, in, tmpl)
		if out == nil {
			e.fail(fmt.Errorf("%s: %s not found or malformed", name, argPath(in)))
		}
		return out
	}
}

// argPath renders arguments as a/b/c, as a mapping lookup's path reads.
func argPath(in any) string {
	args, ok := in.([]any)
	if !ok {
		return fmt.Sprint(in)
	}
	parts := make([]string, len(args))
	for i, a := range args {
		parts[i] = fmt.Sprint(textOrSelf(a))
	}
	return strings.Join(parts, "/")
}

func textOrSelf(v any) any {
	if s, err := scalarString(v); err == nil {
		return s
	}
	return v
}

func (e *evaluator) handleRef(_ string, in, _ any) any {
	name, ok := in.(string)
	if !ok {
		e.fail(fmt.Errorf("Ref %v: not a name", in))
		return nil
	}
	v, err := e.lookupRef(name)
	if err != nil {
		e.fail(err)
		return nil
	}
	return v
}

func (e *evaluator) lookupRef(name string) (any, error) {
	if v, ok := e.params[name]; ok {
		return v, nil
	}
	if name == "AWS::NoValue" {
		return noValue, nil
	}
	if v, ok := e.pseudo[name]; ok {
		return v, nil
	}
	if _, ok := e.tmpl.Resources[name]; ok {
		return e.ref(name)
	}
	return nil, fmt.Errorf("Ref %s: no such parameter, pseudo parameter or resource", name)
}

// handleGetAtt takes both forms goformation leaves: [Resource, Attribute]
// and the short form's "Resource.Attribute".
func (e *evaluator) handleGetAtt(_ string, in, _ any) any {
	var id, attr string
	switch x := in.(type) {
	case string:
		id, attr, _ = strings.Cut(x, ".")
	case []any:
		if len(x) == 2 {
			id, _ = x[0].(string)
			attr, _ = x[1].(string)
		}
	}
	if id == "" || attr == "" {
		e.fail(fmt.Errorf("Fn::GetAtt %v is not Resource.Attribute", in))
		return nil
	}
	v, err := e.getAtt(id, attr)
	if err != nil {
		e.fail(err)
		return nil
	}
	return v
}

// handleSub implements Fn::Sub in its string and [string, variables] forms
// (goformation has already resolved the variables).
func (e *evaluator) handleSub(_ string, in, _ any) any {
	s, err := e.sub(in)
	if err != nil {
		e.fail(err)
		return nil
	}
	return s
}

func (e *evaluator) sub(in any) (string, error) {
	text, ok := in.(string)
	vars := map[string]any{}
	if list, isList := in.([]any); isList && len(list) == 2 {
		text, ok = list[0].(string)
		m, isMap := list[1].(map[string]any)
		ok = ok && isMap
		vars = m
	}
	if !ok {
		return "", errors.New("Fn::Sub needs a string or [string, variables]")
	}
	var b strings.Builder
	for {
		start := strings.Index(text, "${")
		if start < 0 {
			b.WriteString(text)
			return b.String(), nil
		}
		end := strings.Index(text[start:], "}")
		if end < 0 {
			return "", fmt.Errorf("Fn::Sub: unterminated ${ in %q", text)
		}
		end += start
		b.WriteString(text[:start])
		name := strings.TrimSpace(text[start+2 : end])
		text = text[end+1:]
		if strings.HasPrefix(name, "!") { // ${!Literal} is written as ${Literal}
			b.WriteString("${" + name[1:] + "}")
			continue
		}
		var (
			v   any
			err error
		)
		if local, ok := vars[name]; ok {
			v = local
		} else if res, attr, dotted := strings.Cut(name, "."); dotted && !strings.HasPrefix(name, "AWS::") {
			v, err = e.getAtt(res, attr)
		} else {
			v, err = e.lookupRef(name)
		}
		if err == nil {
			var s string
			s, err = scalarString(v)
			b.WriteString(s)
		}
		if err != nil {
			return "", fmt.Errorf("Fn::Sub ${%s}: %w", name, err)
		}
	}
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
