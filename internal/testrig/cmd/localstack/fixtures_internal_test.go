package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOrderFixtures(t *testing.T) {
	dir := t.TempDir()
	body := func(ts string) string { return `{"attacker_uuid":"a","primitive":"p","ts":` + ts + `}` }
	str := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	event := func(bodies ...string) string {
		var recs []string
		for _, b := range bodies {
			recs = append(recs, `{"body":`+str(b)+`}`)
		}
		return `{"Records":[` + strings.Join(recs, ",") + `]}`
	}
	files := map[string]string{
		"invalid-ts.json":          event(body(`"x"`)),
		"malformed-body.json":      event("not json"),
		"sqs-redelivery.json":      event(body("100")),
		"sqs-late.json":            event(body("300"), body("250")),
		"sqs-early.json":           event(body("100")),
		"sqs-eventbridge.json":     event(`{"detail-type":"x","detail":` + body("200") + `}`),
		"sqs-sns.json":             event(`{"Type":"Notification","Message":` + str(body("150")) + `}`),
		"sqs-no-observations.json": event(),
	}
	var paths []string
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	got, err := orderFixtures(paths)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range got {
		names = append(names, filepath.Base(f.path))
	}
	want := []string{
		"sqs-early.json", "sqs-sns.json", "sqs-eventbridge.json", "sqs-late.json", "sqs-no-observations.json",
		"sqs-redelivery.json",
		"invalid-ts.json", "malformed-body.json",
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("order = %v\nwant    %v", names, want)
	}
	if got[3].records != 2 {
		t.Errorf("sqs-late.json records = %d, want 2", got[3].records)
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("[1,2]"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := orderFixtures([]string{bad}); err == nil {
		t.Error("a file that is not an SQS event was accepted")
	}
}

func TestDescribeAlert(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{
			"state changed",
			`{"detail-type":"attribution.profile.state_changed","detail":{"attacker_uuid":"att-1","primitive":"motor.x","old_state":"stable","new_state":"drifting","current_value":"typed","confidence":0.8,"observation_count":6}}`,
			[]string{"state_changed", "att-1", "motor.x", "stable → drifting", `value "typed"`, "confidence 0.800", "count 6"},
		},
		{
			"first state",
			`{"detail-type":"attribution.profile.state_changed","detail":{"identity_uuid":"id-1","primitive":"p","old_state":null,"new_state":"multi_actor"}}`,
			[]string{"id-1", "(none) → multi_actor"},
		},
		{
			"multi actor suspected",
			`{"detail-type":"attribution.profile.multi_actor_suspected","detail":{"attacker_uuid":"att-2","primitives":["a","b"],"confidence":0.6}}`,
			[]string{"multi_actor_suspected", "att-2", "primitives a, b", "confidence 0.600"},
		},
		{"unreadable", "nope", []string{"unreadable alert: nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := describeAlert(tt.body)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("describeAlert = %q, lacks %q", got, w)
				}
			}
		})
	}
}
