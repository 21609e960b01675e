package devstack

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// props reads a resource's resolved Properties and remembers which ones were
// used, so the rest can be reported as not applied locally.
type props struct {
	m    map[string]any
	used map[string]bool
	err  error // first conversion error
}

func newProps(m map[string]any) *props {
	return &props{m: m, used: map[string]bool{}}
}

func (p *props) has(name string) bool {
	_, ok := p.m[name]
	return ok
}

// ignore marks properties that deliberately have no local effect.
func (p *props) ignore(names ...string) {
	for _, n := range names {
		p.used[n] = true
	}
}

func (p *props) raw(name string) (any, bool) {
	v, ok := p.m[name]
	if ok {
		p.used[name] = true
	}
	return v, ok
}

func (p *props) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

func (p *props) str(name string) string {
	v, ok := p.raw(name)
	if !ok {
		return ""
	}
	s, err := scalarString(v)
	if err != nil {
		p.fail(fmt.Errorf("property %s: %w", name, err))
	}
	return s
}

func (p *props) boolean(name string) bool {
	v, ok := p.raw(name)
	if !ok {
		return false
	}
	b, err := asBool(v)
	if err != nil {
		p.fail(fmt.Errorf("property %s: %w", name, err))
	}
	return b
}

func (p *props) list(name string) []any {
	v, ok := p.raw(name)
	if !ok {
		return nil
	}
	l, ok := v.([]any)
	if !ok {
		p.fail(fmt.Errorf("property %s is not a list", name))
	}
	return l
}

func (p *props) object(name string) map[string]any {
	v, ok := p.raw(name)
	if !ok {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		p.fail(fmt.Errorf("property %s is not a mapping", name))
	}
	return m
}

// unused returns the names of the properties nobody read, sorted.
func (p *props) unused() []string {
	var names []string
	for k := range p.m {
		if !p.used[k] {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	return names
}

func asBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		return strconv.ParseBool(x)
	default:
		return false, fmt.Errorf("%v is not a boolean", v)
	}
}

func asInt64(v any) (int64, error) {
	s, err := scalarString(v)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	return n, nil
}

// attributeText renders a property as an SQS-style attribute value: scalars
// as text, mappings and lists as JSON.
func attributeText(v any) (string, error) {
	switch v.(type) {
	case map[string]any, []any:
		b, err := json.Marshal(v)
		return string(b), err
	default:
		return scalarString(v)
	}
}

// field reads key from a nested mapping as text.
func field(m map[string]any, key string) (string, error) {
	v, ok := m[key]
	if !ok {
		return "", fmt.Errorf("%s is missing", key)
	}
	return scalarString(v)
}
