package config_test

import (
	"strings"
	"testing"
	"time"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/config"
)

func lookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func baseEnv() map[string]string {
	return map[string]string{
		"IDENTITIES_TABLE": "ids", "OBSERVATIONS_TABLE": "obs", "STATES_TABLE": "states", "EVENT_BUS_NAME": "bus",
	}
}

func TestFromEnv(t *testing.T) {
	cases := []struct {
		name    string
		set     map[string]string
		wantErr []string
		check   func(t *testing.T, c config.Config)
	}{
		{name: "defaults", check: func(t *testing.T, c config.Config) {
			if c.Thresholds != attribution.DefaultThresholds() || c.ObservationTTL != 0 || c.Registry.Kind("motor.digraph_simhash") != attribution.Hash {
				t.Errorf("unexpected config %+v", c)
			}
		}},
		{name: "ttl and registry", set: map[string]string{"OBSERVATION_TTL_DAYS": "30", "ATTRIBUTION_REGISTRY": `{"custom.metric":"numeric"}`},
			check: func(t *testing.T, c config.Config) {
				if c.ObservationTTL != 30*24*time.Hour || c.Registry.Kind("custom.metric") != attribution.Numeric {
					t.Errorf("unexpected config %+v", c)
				}
			}},
		{name: "cache sized by the function's memory", set: map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256"},
			check: func(t *testing.T, c config.Config) {
				if c.CacheBytes != 32<<20 {
					t.Errorf("CacheBytes = %d, want an eighth of 256 MB", c.CacheBytes)
				}
			}},
		{name: "bad memory size", set: map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "lots"}, wantErr: []string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE"}},
		{name: "missing table", set: map[string]string{"STATES_TABLE": ""}, wantErr: []string{"STATES_TABLE: is required"}},
		{name: "ttl shorter than SQS retention", set: map[string]string{"OBSERVATION_TTL_DAYS": "17"}, wantErr: []string{"OBSERVATION_TTL_DAYS", "at least 18"}},
		{name: "bad registry kind", set: map[string]string{"ATTRIBUTION_REGISTRY": `{"a.b":"fuzzy"}`}, wantErr: []string{"ATTRIBUTION_REGISTRY", "fuzzy"}},
		{name: "bad threshold", set: map[string]string{"ATTRIBUTION_WINDOW": "0"}, wantErr: []string{"window"}},
		{name: "several problems at once", set: map[string]string{"EVENT_BUS_NAME": "", "ATTRIBUTION_NUMERIC_ALPHA": "x"},
			wantErr: []string{"EVENT_BUS_NAME", "ATTRIBUTION_NUMERIC_ALPHA"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := baseEnv()
			for k, v := range tc.set {
				env[k] = v
			}
			c, err := config.FromEnv(lookup(env))
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, c)
				return
			}
			if err == nil {
				t.Fatalf("no error, want one naming %v", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
