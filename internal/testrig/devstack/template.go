package devstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Template is a parsed CloudFormation (or SAM) template.
//
// Values are plain Go data: map[string]any, []any, string, bool, nil and
// json.Number (which keeps a number's literal text, so an environment
// variable declared as 1.0 stays "1.0"). Intrinsic functions, in both their
// long (Fn::Join) and short (!Join) YAML forms, are single-key maps named
// "Ref", "Fn::<Name>" or, for !Condition, "Condition".
type Template struct {
	Parameters map[string]Parameter
	Mappings   map[string]any
	Conditions map[string]any
	Globals    map[string]any
	Resources  map[string]ResourceDef
}

// Parameter is one entry of the template's Parameters section.
type Parameter struct {
	Type    string
	Default *string // nil when the parameter has no default
}

// ResourceDef is one entry of the template's Resources section.
type ResourceDef struct {
	Type       string
	Condition  string
	DependsOn  []string
	Properties map[string]any
	Metadata   map[string]any
}

// LoadTemplate reads and parses the template at path.
func LoadTemplate(path string) (*Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read template: %w", err)
	}
	tmpl, err := ParseTemplate(data)
	if err != nil {
		return nil, fmt.Errorf("parse template %s: %w", path, err)
	}
	return tmpl, nil
}

// ParseTemplate parses a CloudFormation template written in YAML (JSON is a
// subset of YAML, so JSON templates parse too).
func ParseTemplate(data []byte) (*Template, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, errors.New("template is empty")
	}
	root, err := convertNode(doc.Content[0])
	if err != nil {
		return nil, err
	}
	top, ok := root.(map[string]any)
	if !ok {
		return nil, errors.New("template is not a mapping")
	}

	tmpl := &Template{
		Parameters: map[string]Parameter{},
		Mappings:   mapOrEmpty(top["Mappings"]),
		Conditions: mapOrEmpty(top["Conditions"]),
		Globals:    mapOrEmpty(top["Globals"]),
		Resources:  map[string]ResourceDef{},
	}
	for name, raw := range mapOrEmpty(top["Parameters"]) {
		def, ok := raw.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("parameter %s is not a mapping", name)
		}
		p := Parameter{Type: fmt.Sprint(def["Type"])}
		if d, ok := def["Default"]; ok {
			s, err := scalarString(d)
			if err != nil {
				return nil, fmt.Errorf("parameter %s default: %w", name, err)
			}
			p.Default = &s
		}
		tmpl.Parameters[name] = p
	}
	resources, ok := top["Resources"].(map[string]any)
	if !ok || len(resources) == 0 {
		return nil, errors.New("template has no Resources")
	}
	for id, raw := range resources {
		def, ok := raw.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("resource %s is not a mapping", id)
		}
		r := ResourceDef{
			Properties: mapOrEmpty(def["Properties"]),
			Metadata:   mapOrEmpty(def["Metadata"]),
		}
		if r.Type, ok = def["Type"].(string); !ok {
			return nil, fmt.Errorf("resource %s has no Type", id)
		}
		if c, ok := def["Condition"].(string); ok {
			r.Condition = c
		}
		switch d := def["DependsOn"].(type) {
		case string:
			r.DependsOn = []string{d}
		case []any:
			for _, x := range d {
				r.DependsOn = append(r.DependsOn, fmt.Sprint(x))
			}
		}
		tmpl.Resources[id] = r
	}
	return tmpl, nil
}

// ResourceIDs returns the logical IDs of the resources of type typ, sorted.
func (t *Template) ResourceIDs(typ string) []string {
	var ids []string
	for id, r := range t.Resources {
		if r.Type == typ {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// convertNode turns a YAML node into plain Go data, rewriting short-form
// intrinsic tags (!Ref, !GetAtt, !Sub, ...) into their long-form maps.
func convertNode(n *yaml.Node) (any, error) {
	if n.Kind == yaml.AliasNode {
		return convertNode(n.Alias)
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		return convertIntrinsic(n)
	}
	switch n.Kind {
	case yaml.ScalarNode:
		return convertScalar(n)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := convertNode(c)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				return nil, fmt.Errorf("line %d: YAML merge keys are not supported in templates", k.Line)
			}
			val, err := convertNode(v)
			if err != nil {
				return nil, err
			}
			out[k.Value] = val
		}
		return out, nil
	default:
		return nil, fmt.Errorf("line %d: unexpected YAML node kind %d", n.Line, n.Kind)
	}
}

// convertIntrinsic rewrites a node tagged !Name into {"Fn::Name": content}
// ({"Ref": ...} and {"Condition": ...} for !Ref and !Condition). !GetAtt's
// scalar form "Resource.Attribute" becomes the list form.
func convertIntrinsic(n *yaml.Node) (any, error) {
	name := strings.TrimPrefix(n.Tag, "!")
	key := "Fn::" + name
	if name == "Ref" || name == "Condition" {
		key = name
	}
	var content any
	if n.Kind == yaml.ScalarNode {
		content = n.Value // the content of a tagged scalar is always text
	} else {
		untagged := *n
		untagged.Tag = ""
		v, err := convertNode(&untagged)
		if err != nil {
			return nil, err
		}
		content = v
	}
	if name == "GetAtt" {
		if s, ok := content.(string); ok {
			res, attr, found := strings.Cut(s, ".")
			if !found {
				return nil, fmt.Errorf("line %d: !GetAtt %q is not Resource.Attribute", n.Line, s)
			}
			content = []any{res, attr}
		}
	}
	return map[string]any{key: content}, nil
}

func convertScalar(n *yaml.Node) (any, error) {
	switch n.ShortTag() {
	case "!!str", "!!binary", "!!timestamp":
		return n.Value, nil
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return b, nil
	case "!!int", "!!float":
		if json.Valid([]byte(n.Value)) {
			return json.Number(n.Value), nil
		}
		// YAML spellings JSON lacks (0x1F, 1_000, .5, +1): normalise.
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("line %d: number %s has no JSON form", n.Line, n.Value)
		}
		return json.Number(strconv.FormatFloat(f, 'f', -1, 64)), nil
	default:
		return n.Value, nil
	}
}

func mapOrEmpty(v any) map[string]any {
	if m, ok := v.(map[string]any); ok {
		return m
	}
	return map[string]any{}
}

// scalarString renders a resolved scalar the way CloudFormation passes it to
// a string-typed property or environment variable.
func scalarString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	case nil:
		return "", nil
	default:
		return "", fmt.Errorf("value %v (%T) is not a scalar", v, v)
	}
}
