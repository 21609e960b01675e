package devstack

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

const intrinsicTemplate = `
Parameters:
  Env:
    Type: String
    Default: dev
  Size:
    Type: Number
    Default: 30
  Ratio:
    Type: Number
    Default: 1.0
  Principals:
    Type: CommaDelimitedList
    Default: ""
  Required:
    Type: String
Mappings:
  Sizes:
    "30": {Seconds: 180}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  NotProd: !Not [{Condition: IsProd}]
  HasPrincipals: !Not [!Equals [!Join ["", !Ref Principals], ""]]
  Both: !And [{Condition: NotProd}, !Equals [!Ref Size, 30]]
  Either: {"Fn::Or": [{"Condition": "IsProd"}, {"Fn::Equals": ["a", "a"]}]}
Resources:
  Bucket:
    Type: AWS::S3::Bucket
  Queue:
    Type: AWS::SQS::Queue
    Condition: IsProd
`

func mustEvaluator(tb testing.TB, params map[string]string) *evaluator {
	tb.Helper()
	tmpl, err := ParseTemplate([]byte(intrinsicTemplate))
	if err != nil {
		tb.Fatal(err)
	}
	e, err := newEvaluator(tmpl, params, map[string]any{"AWS::Region": "us-east-1", "AWS::StackName": "st"}, stubRef, stubGetAtt)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func stubRef(id string) (string, error)          { return "ref-of-" + id, nil }
func stubGetAtt(id, attr string) (string, error) { return id + "/" + attr, nil }

// mustExpr parses one YAML value the way template values are parsed.
func mustExpr(tb testing.TB, src string) any {
	tb.Helper()
	tmpl, err := ParseTemplate([]byte("Resources:\n  R:\n    Type: T\n    Properties:\n      V: " + src + "\n"))
	if err != nil {
		tb.Fatalf("parse %q: %v", src, err)
	}
	return tmpl.Resources["R"].Properties["V"]
}

func TestEval(t *testing.T) {
	tests := []struct {
		name string
		expr string
		want any
	}{
		{"ref parameter", "!Ref Env", "dev"},
		{"ref number parameter is text", "!Ref Size", "30"},
		{"number", "345600", json.Number("345600")},
		{"ref number default keeps its literal", "!Ref Ratio", "1.0"},
		{"ref pseudo parameter", "!Ref AWS::Region", "us-east-1"},
		{"ref resource", "!Ref Bucket", "ref-of-Bucket"},
		{"long form ref", "{Ref: Env}", "dev"},
		{"getatt scalar form", "!GetAtt Bucket.Arn", "Bucket/Arn"},
		{"getatt list form", "!GetAtt [Bucket, Arn]", "Bucket/Arn"},
		{"long form getatt", `{"Fn::GetAtt": [Bucket, Arn]}`, "Bucket/Arn"},
		{"sub", "!Sub ${AWS::StackName}-${Env}-${Bucket}-${Bucket.Arn}", "st-dev-ref-of-Bucket-Bucket/Arn"},
		{"sub literal", "!Sub 'a-${!Literal}'", "a-${Literal}"},
		{"sub with variables", "!Sub ['${A}-${Env}', {A: !Ref Size}]", "30-dev"},
		{"join", "!Join [':', [a, !Ref Env]]", "a:dev"},
		{"join list parameter", "!Join ['', !Ref Principals]", ""},
		{"select", "!Select [1, [x, y, z]]", "y"},
		{"split", "!Split [',', 'x,y,z']", []any{"x", "y", "z"}},
		{"if false branch", "!If [IsProd, big, small]", "small"},
		{"find in map by parameter", "!FindInMap [Sizes, !Ref Size, Seconds]", json.Number("180")},
		{"base64", "!Base64 hi", "aGk="},
		{"list parameter", "!Ref Principals", []any{""}},
		{"no value drops map entries", "{a: 1, b: !Ref AWS::NoValue, c: !If [IsProd, x, !Ref AWS::NoValue]}", map[string]any{"a": json.Number("1")}},
		{"no value drops list elements", "[a, !If [NotProd, !Ref AWS::NoValue, b], c]", []any{"a", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEvaluator(t, map[string]string{"Required": "r"})
			got, err := e.eval(mustExpr(t, tt.expr))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("eval(%s) = %#v, want %#v", tt.expr, got, tt.want)
			}
		})
	}
}

func TestConditions(t *testing.T) {
	tests := []struct {
		name   string
		params map[string]string
		want   map[string]bool
	}{
		{
			name:   "defaults",
			params: map[string]string{"Required": "r"},
			want:   map[string]bool{"IsProd": false, "NotProd": true, "HasPrincipals": false, "Both": true, "Either": true},
		},
		{
			name:   "overridden",
			params: map[string]string{"Required": "r", "Env": "prod", "Principals": "arn:a,arn:b", "Size": "31"},
			want:   map[string]bool{"IsProd": true, "NotProd": false, "HasPrincipals": true, "Both": false, "Either": true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEvaluator(t, tt.params)
			for name, want := range tt.want {
				got, err := e.condition(name)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if got != want {
					t.Errorf("condition %s = %v, want %v", name, got, want)
				}
			}
		})
	}
}

func TestEvalErrors(t *testing.T) {
	tests := []struct {
		name string
		expr string
		want string
	}{
		{"unknown ref", "!Ref Nope", "no such parameter"},
		{"unknown condition", "!If [Nope, a, b]", "Fn::If: Nope/a/b not found"},
		{"missing mapping key", "!FindInMap [Sizes, '45', Seconds]", "Sizes/45/Seconds not found"},
		{"select out of range", "!Select [5, [a]]", "Fn::Select: 5/[a] not found"},
		{"unsupported function", "!ImportValue x", "not supported locally"},
		{"function goformation does not know", `{"Fn::Length": [a]}`, "Fn::Length is not supported locally"},
		{"getatt without attribute", "!GetAtt Nope", "is not Resource.Attribute"},
		{"unterminated sub", "!Sub 'a-${Env'", "unterminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEvaluator(t, map[string]string{"Required": "r"})
			_, err := e.eval(mustExpr(t, tt.expr))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("eval(%s) error = %v, want one containing %q", tt.expr, err, tt.want)
			}
		})
	}
}

func TestParameters(t *testing.T) {
	tmpl, err := ParseTemplate([]byte(intrinsicTemplate))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newEvaluator(tmpl, nil, nil, stubRef, stubGetAtt); err == nil || !strings.Contains(err.Error(), "Required has no default") {
		t.Errorf("missing required parameter: error = %v", err)
	}
	if _, err := newEvaluator(tmpl, map[string]string{"Required": "r", "Typo": "x"}, nil, stubRef, stubGetAtt); err == nil || !strings.Contains(err.Error(), "Typo is not declared") {
		t.Errorf("undeclared parameter: error = %v", err)
	}
}

func TestParseTemplateRejects(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"not yaml", "Resources: [", "did not find"},
		{"no resources", "Parameters: {}", "no Resources"},
		{"resource without type", "Resources:\n  A: {Properties: {}}", "has no Type"},
		{"short form goformation drops", "Resources:\n  A: {Type: T, Properties: {V: !Condition C}}", "!Condition is not supported locally"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTemplate([]byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseTemplate error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// Rules are CloudFormation's to check: their short forms are left alone.
func TestParseTemplateLeavesRules(t *testing.T) {
	tmpl, err := ParseTemplate([]byte("Rules:\n  R:\n    Assertions:\n      - Assert: !Contains [[a], a]\nResources:\n  A: {Type: T}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := tmpl.ResourceIDs("T"); len(got) != 1 || got[0] != "A" {
		t.Errorf("resources of type T = %v, want [A]", got)
	}
}
