package attribution_test

import (
	"math"
	"strings"
	"testing"

	"decnet-attribution/internal/attribution"
)

func TestDefaultThresholds(t *testing.T) {
	th := attribution.DefaultThresholds()
	if err := th.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	want := attribution.Thresholds{
		Window: 5, MinObservations: 3, CategoricalMajority: 4, NumericAlpha: 0.3,
		NumericStableCV: 0.2, NumericDriftShift: 0.3, NumericConflictCV: 1.0,
		HashMaxRotations: 2, HashWindowSeconds: 86400, MultiActorConfidenceCap: 0.6,
		MultiActorMinPrimitives: 2, MultiActorSuspectedScore: 0.6,
	}
	if th != want {
		t.Errorf("defaults %+v, want the reference %+v", th, want)
	}
}

func TestThresholdsValidate(t *testing.T) {
	cases := []struct {
		name  string
		set   func(*attribution.Thresholds)
		field string // "" for valid
	}{
		{"window 1", func(t *attribution.Thresholds) { t.Window, t.CategoricalMajority = 1, 1 }, ""},
		{"window max", func(t *attribution.Thresholds) { t.Window = attribution.MaxWindow }, ""},
		{"alpha 1", func(t *attribution.Thresholds) { t.NumericAlpha = 1 }, ""},
		{"no rotations allowed", func(t *attribution.Thresholds) { t.HashMaxRotations = 0 }, ""},
		{"cap 0", func(t *attribution.Thresholds) { t.MultiActorConfidenceCap = 0 }, ""},
		{"majority = window", func(t *attribution.Thresholds) { t.CategoricalMajority = 5 }, ""},

		{"window 0", func(t *attribution.Thresholds) { t.Window = 0 }, "window"},
		{"window negative", func(t *attribution.Thresholds) { t.Window = -5 }, "window"},
		{"window above max", func(t *attribution.Thresholds) { t.Window = attribution.MaxWindow + 1 }, "window"},
		{"min observations 0", func(t *attribution.Thresholds) { t.MinObservations = 0 }, "min_observations"},
		{"majority 0", func(t *attribution.Thresholds) { t.CategoricalMajority = 0 }, "categorical_majority"},
		{"majority above window", func(t *attribution.Thresholds) { t.CategoricalMajority = 6 }, "categorical_majority"},
		{"alpha 0", func(t *attribution.Thresholds) { t.NumericAlpha = 0 }, "numeric_alpha"},
		{"alpha negative", func(t *attribution.Thresholds) { t.NumericAlpha = -0.3 }, "numeric_alpha"},
		{"alpha above 1", func(t *attribution.Thresholds) { t.NumericAlpha = 1.01 }, "numeric_alpha"},
		{"alpha NaN", func(t *attribution.Thresholds) { t.NumericAlpha = math.NaN() }, "numeric_alpha"},
		{"stable cv 0", func(t *attribution.Thresholds) { t.NumericStableCV = 0 }, "numeric_stable_cv"},
		{"drift shift negative", func(t *attribution.Thresholds) { t.NumericDriftShift = -0.3 }, "numeric_drift_shift"},
		{"conflict cv infinite", func(t *attribution.Thresholds) { t.NumericConflictCV = math.Inf(1) }, "numeric_conflict_cv"},
		{"conflict cv NaN", func(t *attribution.Thresholds) { t.NumericConflictCV = math.NaN() }, "numeric_conflict_cv"},
		{"hash window 0", func(t *attribution.Thresholds) { t.HashWindowSeconds = 0 }, "hash_window_seconds"},
		{"rotations negative", func(t *attribution.Thresholds) { t.HashMaxRotations = -1 }, "hash_max_rotations"},
		{"cap above 1", func(t *attribution.Thresholds) { t.MultiActorConfidenceCap = 1.5 }, "multi_actor_confidence_cap"},
		{"cap negative", func(t *attribution.Thresholds) { t.MultiActorConfidenceCap = -0.1 }, "multi_actor_confidence_cap"},
		{"suspected score above 1", func(t *attribution.Thresholds) { t.MultiActorSuspectedScore = 2 }, "multi_actor_suspected_confidence"},
		{"min primitives 0", func(t *attribution.Thresholds) { t.MultiActorMinPrimitives = 0 }, "multi_actor_min_primitives"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			th := attribution.DefaultThresholds()
			tc.set(&th)
			err := th.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			assertInvalid(t, err, tc.field, tc.field+": ")
		})
	}
}

// TestThresholdsValidateReportsAll: every bad setting is named at once.
func TestThresholdsValidateReportsAll(t *testing.T) {
	th := attribution.DefaultThresholds()
	th.Window, th.NumericAlpha, th.HashMaxRotations = 0, 0, -1
	err := th.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, field := range []string{"window", "categorical_majority", "numeric_alpha", "hash_max_rotations"} {
		if !strings.Contains(err.Error(), field+": ") {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
}

func TestThresholdsFromEnv(t *testing.T) {
	lookup := func(env map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	}
	if th, err := attribution.ThresholdsFromEnv(lookup(nil)); err != nil || th != attribution.DefaultThresholds() {
		t.Fatalf("empty environment: %+v, %v; want the defaults", th, err)
	}
	reads := []struct {
		name  string
		value string
		get   func(attribution.Thresholds) float64
		want  float64
	}{
		{"ATTRIBUTION_WINDOW", "7", func(t attribution.Thresholds) float64 { return float64(t.Window) }, 7},
		{"ATTRIBUTION_MIN_OBSERVATIONS", "1", func(t attribution.Thresholds) float64 { return float64(t.MinObservations) }, 1},
		{"ATTRIBUTION_CATEGORICAL_MAJORITY", "5", func(t attribution.Thresholds) float64 { return float64(t.CategoricalMajority) }, 5},
		{"ATTRIBUTION_NUMERIC_ALPHA", "0.5", func(t attribution.Thresholds) float64 { return t.NumericAlpha }, 0.5},
		{"ATTRIBUTION_NUMERIC_STABLE_CV", "0.1", func(t attribution.Thresholds) float64 { return t.NumericStableCV }, 0.1},
		{"ATTRIBUTION_NUMERIC_DRIFT_SHIFT", "0.25", func(t attribution.Thresholds) float64 { return t.NumericDriftShift }, 0.25},
		{"ATTRIBUTION_NUMERIC_CONFLICT_CV", "2", func(t attribution.Thresholds) float64 { return t.NumericConflictCV }, 2},
		{"ATTRIBUTION_HASH_MAX_ROTATIONS", "0", func(t attribution.Thresholds) float64 { return float64(t.HashMaxRotations) }, 0},
		{"ATTRIBUTION_HASH_WINDOW_SECONDS", "3600.5", func(t attribution.Thresholds) float64 { return t.HashWindowSeconds }, 3600.5},
		{"ATTRIBUTION_MULTI_ACTOR_CONFIDENCE_CAP", "0.5", func(t attribution.Thresholds) float64 { return t.MultiActorConfidenceCap }, 0.5},
		{"ATTRIBUTION_MULTI_ACTOR_MIN_PRIMITIVES", "3", func(t attribution.Thresholds) float64 { return float64(t.MultiActorMinPrimitives) }, 3},
	}
	if len(reads) != len(attribution.ThresholdEnv) {
		t.Fatalf("%d variables tested, ThresholdEnv lists %d", len(reads), len(attribution.ThresholdEnv))
	}
	for _, tc := range reads {
		t.Run(tc.name, func(t *testing.T) {
			th, err := attribution.ThresholdsFromEnv(lookup(map[string]string{tc.name: tc.value}))
			if err != nil {
				t.Fatalf("%s=%s: %v", tc.name, tc.value, err)
			}
			if got := tc.get(th); got != tc.want {
				t.Errorf("%s=%s read as %v", tc.name, tc.value, got)
			}
			for _, bad := range []string{"abc", "1,5", "NaN"} {
				_, err := attribution.ThresholdsFromEnv(lookup(map[string]string{tc.name: bad}))
				assertInvalid(t, err, tc.name, tc.name+": ")
				if !strings.Contains(err.Error(), bad) {
					t.Errorf("%s=%s: error %q does not quote the value", tc.name, bad, err)
				}
			}
		})
	}
	cases := []struct {
		name  string
		env   map[string]string
		field string
		say   []string
	}{
		{"integer with a fraction", map[string]string{"ATTRIBUTION_WINDOW": "5.5"}, "ATTRIBUTION_WINDOW", []string{"want an integer"}},
		{"every bad variable named", map[string]string{"ATTRIBUTION_WINDOW": "x", "ATTRIBUTION_NUMERIC_ALPHA": "y"}, "ATTRIBUTION_WINDOW", []string{"ATTRIBUTION_WINDOW", "ATTRIBUTION_NUMERIC_ALPHA"}},
		{"parsed but out of range", map[string]string{"ATTRIBUTION_WINDOW": "3"}, "categorical_majority", []string{"thresholds: ", "categorical_majority"}},
		{"infinite", map[string]string{"ATTRIBUTION_HASH_WINDOW_SECONDS": "+Inf"}, "hash_window_seconds", []string{"hash_window_seconds"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := attribution.ThresholdsFromEnv(lookup(tc.env))
			assertInvalid(t, err, tc.field, tc.say[0])
			for _, s := range tc.say[1:] {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
	if th, err := attribution.ThresholdsFromEnv(lookup(map[string]string{"ATTRIBUTION_WINDOW": ""})); err != nil || th.Window != 5 {
		t.Errorf("an empty variable must keep the default: %+v, %v", th, err)
	}
}

func TestRegistry(t *testing.T) {
	builtin := attribution.BuiltinRegistry()
	kinds := []struct {
		primitive string
		want      attribution.Kind
	}{
		{"motor.digraph_simhash", attribution.Hash},
		{"toolchain.tls.jarm_server", attribution.Hash},
		{"toolchain.ssh.hassh_client", attribution.Hash},
		{"toolchain.c2.beacon_interval_ms", attribution.Numeric},
		{"motor.input_modality", attribution.Categorical},
		{"temporal.active_hours", attribution.Categorical},
		{"never.heard_of", attribution.Categorical},
	}
	for _, tc := range kinds {
		if got := builtin.Kind(tc.primitive); got != tc.want {
			t.Errorf("builtin kind of %s = %s, want %s", tc.primitive, got, tc.want)
		}
	}
	if got := attribution.Registry(nil).Kind("motor.digraph_simhash"); got != attribution.Categorical {
		t.Errorf("an empty registry gives %s, want categorical", got)
	}

	over, err := builtin.WithOverrides([]byte(`{"temporal.gap_ms":"numeric","motor.digraph_simhash":"categorical","x.y":"hash"}`))
	if err != nil {
		t.Fatalf("WithOverrides: %v", err)
	}
	if over.Kind("temporal.gap_ms") != attribution.Numeric || over.Kind("motor.digraph_simhash") != attribution.Categorical ||
		over.Kind("x.y") != attribution.Hash || over.Kind("toolchain.tls.jarm_server") != attribution.Hash {
		t.Errorf("overrides not applied on top of the builtins: %v", over)
	}
	if builtin.Kind("motor.digraph_simhash") != attribution.Hash || builtin.Kind("x.y") != attribution.Categorical {
		t.Errorf("WithOverrides changed the registry it was called on")
	}
	if _, err := builtin.WithOverrides([]byte(`{}`)); err != nil {
		t.Errorf("empty overrides: %v", err)
	}

	bad := []struct {
		name   string
		data   string
		reason string
	}{
		{"not JSON", `numeric`, "want a JSON object"},
		{"array", `["a.b"]`, "want a JSON object"},
		{"kind not a string", `{"a.b":1}`, "want a JSON object"},
		{"unknown kind", `{"a.b":"ordinal"}`, `unknown value kind "ordinal"`},
		{"kind in capitals", `{"a.b":"Numeric"}`, `unknown value kind "Numeric"`},
		{"bad primitive name", `{"motor":"hash"}`, `primitive "motor"`},
		{"primitive with space", `{"motor.in put":"hash"}`, `primitive "motor.in put"`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := builtin.WithOverrides([]byte(tc.data))
			assertInvalid(t, err, "registry", tc.reason)
		})
	}
}

func TestParseKind(t *testing.T) {
	for _, s := range []string{"categorical", "numeric", "hash"} {
		if k, err := attribution.ParseKind(s); err != nil || string(k) != s {
			t.Errorf("ParseKind(%q) = %q, %v", s, k, err)
		}
	}
	for _, s := range []string{"", "bool", "HASH"} {
		if _, err := attribution.ParseKind(s); err == nil {
			t.Errorf("ParseKind(%q) accepted", s)
		}
	}
}
