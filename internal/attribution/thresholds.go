package attribution

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// MaxWindow bounds the window N: a series record keeps 2N values of at most
// MaxValueBytes each, which stays far below DynamoDB's 400 KB item limit.
const MaxWindow = 50

// Thresholds are the mergers' and transition rules' parameters.
type Thresholds struct {
	Window                   int     // N: recent and older windows (categorical and numeric)
	MinObservations          int     // below this, categorical and numeric are unknown
	CategoricalMajority      int     // top count that makes a window clear
	NumericAlpha             float64 // EWMA smoothing factor
	NumericStableCV          float64 // kept for reference; no rule uses it
	NumericDriftShift        float64 // relative mean shift that is drift
	NumericConflictCV        float64 // coefficient of variation above which values conflict
	HashMaxRotations         int     // rotations up to this are drift, above it conflict
	HashWindowSeconds        float64 // how far back from the newest hash rotations count
	MultiActorConfidenceCap  float64 // multi_actor confidence never exceeds this
	MultiActorMinPrimitives  int     // multi_actor primitives of one identity that raise suspicion
	MultiActorSuspectedScore float64 // confidence of multi_actor_suspected
}

// DefaultThresholds returns the reference defaults.
func DefaultThresholds() Thresholds {
	return Thresholds{
		Window:                   5,
		MinObservations:          3,
		CategoricalMajority:      4,
		NumericAlpha:             0.3,
		NumericStableCV:          0.20,
		NumericDriftShift:        0.30,
		NumericConflictCV:        1.0,
		HashMaxRotations:         2,
		HashWindowSeconds:        86400,
		MultiActorConfidenceCap:  0.6,
		MultiActorMinPrimitives:  2,
		MultiActorSuspectedScore: 0.6,
	}
}

// Validate reports every out-of-range threshold, naming the setting.
func (t Thresholds) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, Invalidf(field, format, args...))
	}
	if t.Window < 1 || t.Window > MaxWindow {
		bad("window", "must be between 1 and %d, got %d", MaxWindow, t.Window)
	}
	if t.MinObservations < 1 {
		bad("min_observations", "must be at least 1, got %d", t.MinObservations)
	}
	if t.CategoricalMajority < 1 || t.CategoricalMajority > t.Window {
		bad("categorical_majority", "must be between 1 and the window (%d), got %d", t.Window, t.CategoricalMajority)
	}
	if !(t.NumericAlpha > 0 && t.NumericAlpha <= 1) {
		bad("numeric_alpha", "must be in (0, 1], got %v", t.NumericAlpha)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"numeric_stable_cv", t.NumericStableCV},
		{"numeric_drift_shift", t.NumericDriftShift},
		{"numeric_conflict_cv", t.NumericConflictCV},
		{"hash_window_seconds", t.HashWindowSeconds},
	} {
		if !(f.v > 0) || math.IsInf(f.v, 0) {
			bad(f.name, "must be a positive finite number, got %v", f.v)
		}
	}
	if t.HashMaxRotations < 0 {
		bad("hash_max_rotations", "must not be negative, got %d", t.HashMaxRotations)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"multi_actor_confidence_cap", t.MultiActorConfidenceCap},
		{"multi_actor_suspected_confidence", t.MultiActorSuspectedScore},
	} {
		if !(f.v >= 0 && f.v <= 1) {
			bad(f.name, "must be in [0, 1], got %v", f.v)
		}
	}
	if t.MultiActorMinPrimitives < 1 {
		bad("multi_actor_min_primitives", "must be at least 1, got %d", t.MultiActorMinPrimitives)
	}
	return errors.Join(errs...)
}

// ThresholdEnv names the environment variable of each threshold.
var ThresholdEnv = []string{
	"ATTRIBUTION_WINDOW",
	"ATTRIBUTION_MIN_OBSERVATIONS",
	"ATTRIBUTION_CATEGORICAL_MAJORITY",
	"ATTRIBUTION_NUMERIC_ALPHA",
	"ATTRIBUTION_NUMERIC_STABLE_CV",
	"ATTRIBUTION_NUMERIC_DRIFT_SHIFT",
	"ATTRIBUTION_NUMERIC_CONFLICT_CV",
	"ATTRIBUTION_HASH_MAX_ROTATIONS",
	"ATTRIBUTION_HASH_WINDOW_SECONDS",
	"ATTRIBUTION_MULTI_ACTOR_CONFIDENCE_CAP",
	"ATTRIBUTION_MULTI_ACTOR_MIN_PRIMITIVES",
}

// ThresholdsFromEnv starts from the defaults and applies every variable of
// ThresholdEnv that lookup finds non-empty, then validates the result.
func ThresholdsFromEnv(lookup func(string) (string, bool)) (Thresholds, error) {
	t := DefaultThresholds()
	ints := map[string]*int{
		"ATTRIBUTION_WINDOW":                     &t.Window,
		"ATTRIBUTION_MIN_OBSERVATIONS":           &t.MinObservations,
		"ATTRIBUTION_CATEGORICAL_MAJORITY":       &t.CategoricalMajority,
		"ATTRIBUTION_HASH_MAX_ROTATIONS":         &t.HashMaxRotations,
		"ATTRIBUTION_MULTI_ACTOR_MIN_PRIMITIVES": &t.MultiActorMinPrimitives,
	}
	floats := map[string]*float64{
		"ATTRIBUTION_NUMERIC_ALPHA":              &t.NumericAlpha,
		"ATTRIBUTION_NUMERIC_STABLE_CV":          &t.NumericStableCV,
		"ATTRIBUTION_NUMERIC_DRIFT_SHIFT":        &t.NumericDriftShift,
		"ATTRIBUTION_NUMERIC_CONFLICT_CV":        &t.NumericConflictCV,
		"ATTRIBUTION_HASH_WINDOW_SECONDS":        &t.HashWindowSeconds,
		"ATTRIBUTION_MULTI_ACTOR_CONFIDENCE_CAP": &t.MultiActorConfidenceCap,
	}
	var errs []error
	for _, name := range ThresholdEnv {
		raw, ok := lookup(name)
		if !ok || raw == "" {
			continue
		}
		if p, isInt := ints[name]; isInt {
			n, err := strconv.Atoi(raw)
			if err != nil {
				errs = append(errs, Invalidf(name, "want an integer, got %q", raw))
				continue
			}
			*p = n
			continue
		}
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil || math.IsNaN(f) {
			errs = append(errs, Invalidf(name, "want a number, got %q", raw))
			continue
		}
		*floats[name] = f
	}
	if err := errors.Join(errs...); err != nil {
		return t, err
	}
	if err := t.Validate(); err != nil {
		return t, fmt.Errorf("thresholds: %w", err)
	}
	return t, nil
}
