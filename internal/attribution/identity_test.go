package attribution_test

import (
	"reflect"
	"strings"
	"testing"

	"decnet-attribution/internal/attribution"
)

func TestDecodeIdentityEvents(t *testing.T) {
	env := func(topic, payload string) string {
		return `{"v":1,"id":"e1","topic":"` + topic + `","type":"` + strings.TrimPrefix(topic, "identity.") + `","ts":1714054176.5,"payload":` + payload + `}`
	}
	stamp := attribution.Stamp{TS: 1714054176.5, ID: "e1"}
	good := []struct {
		name string
		body string
		want attribution.IdentityEvent
	}{
		{"formed", env("identity.formed", `{"identity_uuid":"I","observation_uuids":["b","a","b"]}`),
			attribution.IdentityEvent{Topic: attribution.TopicIdentityFormed, Stamp: stamp, Identity: "I", Attackers: []string{"a", "b"}}},
		{"linked", env("identity.observation.linked", `{"identity_uuid":"I","observation_uuid":"a"}`),
			attribution.IdentityEvent{Topic: attribution.TopicIdentityLinked, Stamp: stamp, Identity: "I", Attackers: []string{"a"}}},
		{"merged", env("identity.merged", `{"winner_uuid":"W","loser_uuid":"L"}`),
			attribution.IdentityEvent{Topic: attribution.TopicIdentityMerged, Stamp: stamp, Winner: "W", Loser: "L"}},
		{"unmerged", env("identity.unmerged", `{"resurrected_uuid":"L","former_winner_uuid":"W"}`),
			attribution.IdentityEvent{Topic: attribution.TopicIdentityUnmerged, Stamp: stamp, Winner: "W", Loser: "L"}},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			d, err := attribution.Decode([]byte(tc.body))
			if err != nil || d.Identity == nil {
				t.Fatalf("decode: %+v, %v", d, err)
			}
			if !reflect.DeepEqual(*d.Identity, tc.want) {
				t.Errorf("got %+v, want %+v", *d.Identity, tc.want)
			}
		})
	}
	if d, err := attribution.Decode([]byte(env("identity.campaign.assigned", `{"identity_uuid":"I","campaign_id":"c"}`))); err != nil || d.Ignored == "" {
		t.Errorf("campaign assignment: %+v, %v; want accepted and ignored", d, err)
	}
	bad := []struct {
		name, body, field, reason string
	}{
		{"unknown identity topic", env("identity.renamed", `{}`), "topic", "not an identity event this service reads"},
		{"type disagrees with topic", `{"v":1,"id":"e","topic":"identity.merged","type":"formed","ts":1,"payload":{}}`, "type", "does not match topic"},
		{"no id", `{"v":1,"topic":"identity.merged","ts":1,"payload":{"winner_uuid":"W","loser_uuid":"L"}}`, "id", "is required"},
		{"no ts", `{"v":1,"id":"e","topic":"identity.merged","payload":{"winner_uuid":"W","loser_uuid":"L"}}`, "ts", "orders identity events"},
		{"ts a string", `{"v":1,"id":"e","topic":"identity.merged","ts":"1","payload":{"winner_uuid":"W","loser_uuid":"L"}}`, "ts", "finite number"},
		{"payload not an object", env("identity.merged", `[1]`), "payload", "JSON object"},
		{"formed without identity", env("identity.formed", `{"observation_uuids":["a"]}`), "payload.identity_uuid", "is required"},
		{"formed without attackers", env("identity.formed", `{"identity_uuid":"I"}`), "payload.observation_uuids", "is required"},
		{"formed with no attacker", env("identity.formed", `{"identity_uuid":"I","observation_uuids":[]}`), "payload.observation_uuids", "at least one"},
		{"formed attackers not an array", env("identity.formed", `{"identity_uuid":"I","observation_uuids":"a"}`), "payload.observation_uuids", "must be an array"},
		{"formed attacker blank", env("identity.formed", `{"identity_uuid":"I","observation_uuids":["a"," "]}`), "payload.observation_uuids[1]", "must not be empty"},
		{"linked attacker a number", env("identity.observation.linked", `{"identity_uuid":"I","observation_uuid":7}`), "payload.observation_uuid", "must be a string"},
		{"merged without loser", env("identity.merged", `{"winner_uuid":"W"}`), "payload.loser_uuid", "is required"},
		{"merged into itself", env("identity.merged", `{"winner_uuid":"W","loser_uuid":"W"}`), "payload.loser_uuid", "cannot merge into itself"},
		{"unmerged without former winner", env("identity.unmerged", `{"resurrected_uuid":"L"}`), "payload.former_winner_uuid", "is required"},
		{"identity named like a record key", env("identity.merged", `{"winner_uuid":"#identity","loser_uuid":"L"}`), "payload.winner_uuid", "must not start with '#'"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := attribution.Decode([]byte(tc.body))
			if attribution.ErrorCode(err) != attribution.EINVALID || attribution.ErrorField(err) != tc.field || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("err = %v (field %q), want invalid %s: …%s…", err, attribution.ErrorField(err), tc.field, tc.reason)
			}
		})
	}
	if _, err := attribution.DecodeMessage([]byte(env("identity.merged", `{"winner_uuid":"W","loser_uuid":"L"}`))); attribution.ErrorCode(err) != attribution.EINVALID {
		t.Errorf("DecodeMessage of an identity event: %v, want invalid", err)
	}
}
