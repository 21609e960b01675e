package devstack

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// noValue is what AWS::NoValue evaluates to: the enclosing property or list
// element is dropped.
type noValueType struct{}

var noValue = noValueType{}

// evaluator resolves intrinsic functions against parameter values, pseudo
// parameters, mappings, conditions and the resources of one stack.
type evaluator struct {
	tmpl       *Template
	params     map[string]any // string, or []any for list-typed parameters
	pseudo     map[string]any
	conditions map[string]bool
	evaluating map[string]bool // conditions being evaluated, to catch cycles

	// ref and getAtt resolve references to resources.
	ref    func(logicalID string) (string, error)
	getAtt func(logicalID, attribute string) (string, error)
}

func newEvaluator(tmpl *Template, params map[string]string, pseudo map[string]any) (*evaluator, error) {
	e := &evaluator{
		tmpl:       tmpl,
		params:     map[string]any{},
		pseudo:     pseudo,
		conditions: map[string]bool{},
		evaluating: map[string]bool{},
	}
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
	return e, nil
}

// eval resolves every intrinsic function in v. Map entries and list elements
// that evaluate to AWS::NoValue are dropped; v itself may evaluate to noValue.
func (e *evaluator) eval(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 1 {
			for k, arg := range x {
				if k == "Ref" || strings.HasPrefix(k, "Fn::") {
					return e.call(k, arg)
				}
			}
		}
		out := make(map[string]any, len(x))
		for k, val := range x {
			r, err := e.eval(val)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			if r != noValue {
				out[k] = r
			}
		}
		return out, nil
	case []any:
		out := make([]any, 0, len(x))
		for i, val := range x {
			r, err := e.eval(val)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			if r != noValue {
				out = append(out, r)
			}
		}
		return out, nil
	default:
		return v, nil
	}
}

// evalString resolves v and requires a scalar, rendered as text.
func (e *evaluator) evalString(v any) (string, error) {
	r, err := e.eval(v)
	if err != nil {
		return "", err
	}
	return scalarString(r)
}

func (e *evaluator) call(fn string, arg any) (any, error) {
	switch fn {
	case "Ref":
		name, err := e.evalString(arg)
		if err != nil {
			return nil, fmt.Errorf("Ref: %w", err)
		}
		return e.lookupRef(name)
	case "Fn::GetAtt":
		args, err := e.evalList(arg, 2, fn)
		if err != nil {
			return nil, err
		}
		id, err1 := scalarString(args[0])
		attr, err2 := scalarString(args[1])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("%s: %w", fn, err)
		}
		return e.getAtt(id, attr)
	case "Fn::Sub":
		return e.sub(arg)
	case "Fn::Join":
		args, err := e.evalList(arg, 2, fn)
		if err != nil {
			return nil, err
		}
		delim, err := scalarString(args[0])
		if err != nil {
			return nil, fmt.Errorf("%s delimiter: %w", fn, err)
		}
		items, ok := args[1].([]any)
		if !ok {
			return nil, fmt.Errorf("%s: second argument is not a list", fn)
		}
		parts := make([]string, len(items))
		for i, it := range items {
			if parts[i], err = scalarString(it); err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", fn, i, err)
			}
		}
		return strings.Join(parts, delim), nil
	case "Fn::Select":
		args, err := e.evalList(arg, 2, fn)
		if err != nil {
			return nil, err
		}
		idxText, err := scalarString(args[0])
		if err != nil {
			return nil, fmt.Errorf("%s index: %w", fn, err)
		}
		idx, err := strconv.Atoi(idxText)
		items, ok := args[1].([]any)
		if err != nil || !ok || idx < 0 || idx >= len(items) {
			return nil, fmt.Errorf("%s: index %q out of range of %v", fn, idxText, args[1])
		}
		return items[idx], nil
	case "Fn::Split":
		args, err := e.evalList(arg, 2, fn)
		if err != nil {
			return nil, err
		}
		delim, err1 := scalarString(args[0])
		s, err2 := scalarString(args[1])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("%s: %w", fn, err)
		}
		var out []any
		for _, p := range strings.Split(s, delim) {
			out = append(out, p)
		}
		return out, nil
	case "Fn::If":
		raw, ok := arg.([]any)
		if !ok || len(raw) != 3 {
			return nil, fmt.Errorf("%s needs [condition, then, else]", fn)
		}
		name, ok := raw[0].(string)
		if !ok {
			return nil, fmt.Errorf("%s: condition name is not a string", fn)
		}
		cond, err := e.condition(name)
		if err != nil {
			return nil, err
		}
		if cond {
			return e.eval(raw[1])
		}
		return e.eval(raw[2])
	case "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or":
		return e.condValue(map[string]any{fn: arg})
	case "Fn::FindInMap":
		return e.findInMap(arg)
	case "Fn::Base64":
		s, err := e.evalString(arg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fn, err)
		}
		return base64.StdEncoding.EncodeToString([]byte(s)), nil
	case "Fn::GetAZs":
		region, _ := e.pseudo["AWS::Region"].(string)
		return []any{region + "a", region + "b", region + "c"}, nil
	case "Fn::Length":
		r, err := e.eval(arg)
		if err != nil {
			return nil, err
		}
		items, ok := r.([]any)
		if !ok {
			return nil, fmt.Errorf("%s: argument is not a list", fn)
		}
		return json.Number(strconv.Itoa(len(items))), nil
	case "Fn::ToJsonString":
		r, err := e.eval(arg)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fn, err)
		}
		return string(b), nil
	default:
		return nil, fmt.Errorf("intrinsic function %s is not supported locally", fn)
	}
}

// evalList resolves arg and requires a list of n elements.
func (e *evaluator) evalList(arg any, n int, fn string) ([]any, error) {
	r, err := e.eval(arg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn, err)
	}
	list, ok := r.([]any)
	if !ok || len(list) != n {
		return nil, fmt.Errorf("%s needs a list of %d arguments, got %v", fn, n, r)
	}
	return list, nil
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

// sub implements Fn::Sub in its string and [string, variables] forms.
func (e *evaluator) sub(arg any) (any, error) {
	var text string
	vars := map[string]any{}
	switch a := arg.(type) {
	case string:
		text = a
	case []any:
		if len(a) != 2 {
			return nil, errors.New("Fn::Sub needs a string or [string, variables]")
		}
		var ok bool
		if text, ok = a[0].(string); !ok {
			return nil, errors.New("Fn::Sub: template is not a string")
		}
		m, ok := a[1].(map[string]any)
		if !ok {
			return nil, errors.New("Fn::Sub: variables are not a mapping")
		}
		for k, v := range m {
			r, err := e.evalString(v)
			if err != nil {
				return nil, fmt.Errorf("Fn::Sub variable %s: %w", k, err)
			}
			vars[k] = r
		}
	default:
		return nil, errors.New("Fn::Sub needs a string or [string, variables]")
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
			return nil, fmt.Errorf("Fn::Sub: unterminated ${ in %q", text)
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
		if err != nil {
			return nil, fmt.Errorf("Fn::Sub ${%s}: %w", name, err)
		}
		s, err := scalarString(v)
		if err != nil {
			return nil, fmt.Errorf("Fn::Sub ${%s}: %w", name, err)
		}
		b.WriteString(s)
	}
}

func (e *evaluator) findInMap(arg any) (any, error) {
	raw, ok := arg.([]any)
	if !ok || (len(raw) != 3 && len(raw) != 4) {
		return nil, errors.New("Fn::FindInMap needs [map, top-level key, second-level key]")
	}
	keys := make([]string, 3)
	for i := range keys {
		k, err := e.evalString(raw[i])
		if err != nil {
			return nil, fmt.Errorf("Fn::FindInMap key %d: %w", i, err)
		}
		keys[i] = k
	}
	if m, ok := e.tmpl.Mappings[keys[0]].(map[string]any); ok {
		if second, ok := m[keys[1]].(map[string]any); ok {
			if v, ok := second[keys[2]]; ok {
				return e.eval(v)
			}
		}
	}
	if len(raw) == 4 { // {DefaultValue: x}, from AWS::LanguageExtensions
		if d, ok := raw[3].(map[string]any); ok {
			if v, ok := d["DefaultValue"]; ok {
				return e.eval(v)
			}
		}
	}
	return nil, fmt.Errorf("Fn::FindInMap: %s/%s/%s not found", keys[0], keys[1], keys[2])
}

// condition evaluates the named entry of the Conditions section.
func (e *evaluator) condition(name string) (bool, error) {
	if v, ok := e.conditions[name]; ok {
		return v, nil
	}
	def, ok := e.tmpl.Conditions[name]
	if !ok {
		return false, fmt.Errorf("condition %s is not defined", name)
	}
	if e.evaluating[name] {
		return false, fmt.Errorf("condition %s refers to itself", name)
	}
	e.evaluating[name] = true
	defer delete(e.evaluating, name)
	v, err := e.condValue(def)
	if err != nil {
		return false, fmt.Errorf("condition %s: %w", name, err)
	}
	e.conditions[name] = v
	return v, nil
}

// condValue evaluates a condition expression: Fn::Equals, Fn::Not, Fn::And,
// Fn::Or, {"Condition": name} or a literal boolean.
func (e *evaluator) condValue(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		return strconv.ParseBool(x)
	case map[string]any:
		if len(x) != 1 {
			break
		}
		for fn, arg := range x {
			switch fn {
			case "Condition":
				name, ok := arg.(string)
				if !ok {
					return false, errors.New("Condition: name is not a string")
				}
				return e.condition(name)
			case "Fn::Equals":
				args, err := e.evalList(arg, 2, fn)
				if err != nil {
					return false, err
				}
				a, err1 := json.Marshal(normaliseScalar(args[0]))
				b, err2 := json.Marshal(normaliseScalar(args[1]))
				if err := errors.Join(err1, err2); err != nil {
					return false, fmt.Errorf("%s: %w", fn, err)
				}
				return string(a) == string(b), nil
			case "Fn::Not":
				list, ok := arg.([]any)
				if !ok || len(list) != 1 {
					return false, errors.New("Fn::Not needs a list of one condition")
				}
				c, err := e.condValue(list[0])
				return !c, err
			case "Fn::And", "Fn::Or":
				list, ok := arg.([]any)
				if !ok || len(list) < 2 {
					return false, fmt.Errorf("%s needs a list of conditions", fn)
				}
				and := fn == "Fn::And"
				for _, item := range list {
					c, err := e.condValue(item)
					if err != nil {
						return false, err
					}
					if c != and {
						return c, nil
					}
				}
				return and, nil
			default:
				r, err := e.eval(x)
				if err != nil {
					return false, err
				}
				return e.condValue(r)
			}
		}
	}
	return false, fmt.Errorf("%v is not a condition", v)
}

// normaliseScalar makes "5" and 5 compare equal in Fn::Equals, as
// CloudFormation compares parameter values (always strings) with literals.
func normaliseScalar(v any) any {
	if s, err := scalarString(v); err == nil {
		return s
	}
	return v
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
