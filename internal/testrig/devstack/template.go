package devstack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/awslabs/goformation/v7/intrinsics"
	"gopkg.in/yaml.v3"
)

// Template is a parsed CloudFormation (or SAM) template.
//
// Values are plain Go data: map[string]any, []any, string, bool, nil and
// json.Number. Intrinsic functions are in their long form: single-key maps
// named "Ref", "Fn::<Name>" or "Condition".
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

// ParseTemplate parses a CloudFormation template written in YAML or JSON.
// goformation reads it and turns the short-form tags (!Ref, !Sub, ...)
// into their long form.
func ParseTemplate(data []byte) (*Template, error) {
	defaults, err := readYAMLText(data)
	if err != nil {
		return nil, err
	}
	longForm, err := intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		return nil, err
	}
	var doc struct {
		Parameters map[string]struct{ Type string }
		Mappings   map[string]any
		Conditions map[string]any
		Globals    map[string]any
		Resources  map[string]struct {
			Type       string
			Condition  string
			DependsOn  any
			Properties map[string]any
			Metadata   map[string]any
		}
	}
	dec := json.NewDecoder(bytes.NewReader(longForm))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	if len(doc.Resources) == 0 {
		return nil, errors.New("template has no Resources")
	}
	tmpl := &Template{
		Parameters: map[string]Parameter{},
		Mappings:   orEmpty(doc.Mappings),
		Conditions: orEmpty(doc.Conditions),
		Globals:    orEmpty(doc.Globals),
		Resources:  map[string]ResourceDef{},
	}
	for name, p := range doc.Parameters {
		tmpl.Parameters[name] = Parameter{Type: p.Type, Default: defaults[name]}
	}
	for id, def := range doc.Resources {
		if def.Type == "" {
			return nil, fmt.Errorf("resource %s has no Type", id)
		}
		r := ResourceDef{Type: def.Type, Condition: def.Condition, Properties: orEmpty(def.Properties), Metadata: orEmpty(def.Metadata)}
		switch d := def.DependsOn.(type) {
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

// goformationTags are the short-form tags goformation's reader turns into
// intrinsic functions.
var goformationTags = map[string]bool{
	"!Ref": true, "!GetAtt": true, "!Base64": true, "!FindInMap": true, "!GetAZs": true,
	"!ImportValue": true, "!Join": true, "!Select": true, "!Split": true, "!Sub": true,
	"!Equals": true, "!Cidr": true, "!And": true, "!If": true, "!Not": true, "!Or": true,
}

// readYAMLText covers two gaps of goformation's reader, from the YAML
// itself. It reads every number as a float64, so a parameter default
// written 1.0 would reach the function as "1" where CloudFormation passes
// the text as written: readYAMLText returns the defaults as written. And it
// drops the short-form tags it does not know (!Condition, !Contains, ...),
// leaving their arguments in place of the function: readYAMLText refuses
// them, except under Rules, which CloudFormation checks and Provision does
// not read.
func readYAMLText(data []byte) (map[string]*string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("template is not a mapping")
	}
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != "Rules" {
			if err := refuseUnknownTags(top.Content[i+1]); err != nil {
				return nil, err
			}
		}
	}
	var params struct {
		Parameters map[string]struct {
			Default yaml.Node `yaml:"Default"`
		} `yaml:"Parameters"`
	}
	if err := top.Decode(&params); err != nil {
		return nil, fmt.Errorf("parameters: %w", err)
	}
	defaults := map[string]*string{}
	for name, p := range params.Parameters {
		if p.Default.Kind == yaml.ScalarNode {
			defaults[name] = &p.Default.Value
		}
	}
	return defaults, nil
}

func refuseUnknownTags(n *yaml.Node) error {
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") && !goformationTags[n.Tag] {
		return fmt.Errorf("line %d: the short form %s is not supported locally; write it in long form", n.Line, n.Tag)
	}
	for _, c := range n.Content {
		if err := refuseUnknownTags(c); err != nil {
			return err
		}
	}
	return nil
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

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func mapOrEmpty(v any) map[string]any {
	m, _ := v.(map[string]any)
	return orEmpty(m)
}

// scalarString renders a resolved scalar the way CloudFormation passes it to
// a string-typed property or environment variable.
func scalarString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case float64: // as goformation's handlers see numbers
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	case nil:
		return "", nil
	default:
		return "", fmt.Errorf("value %v (%T) is not a scalar", v, v)
	}
}
