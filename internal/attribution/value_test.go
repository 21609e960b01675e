package attribution_test

import (
	"testing"

	"decnet-attribution/internal/attribution"
)

func mustValue(tb testing.TB, raw string) attribution.Value {
	tb.Helper()
	v, err := attribution.CanonicalValue([]byte(raw))
	if err != nil {
		tb.Fatalf("CanonicalValue(%s): %v", raw, err)
	}
	return v
}

// TestValueEquality pins the reference's equality (Python's == over the
// decoded JSON) on the cases where JSON text and value disagree.
func TestValueEquality(t *testing.T) {
	cases := []struct {
		a, b  string
		equal bool
	}{
		{`true`, `1`, true},
		{`true`, `1.0`, true},
		{`1`, `1.0`, true},
		{`false`, `0`, true},
		{`false`, `-0.0`, true},
		{`0`, `-0.0`, true},
		{`-0`, `0.0`, true},
		{`true`, `false`, false},
		{`true`, `2`, false},
		{`1e2`, `100`, true},
		{`1E2`, `100.0`, true},
		{`9007199254740993`, `9007199254740992`, false},
		{`9007199254740992`, `9007199254740992.0`, true},
		{`9007199254740993`, `9007199254740993.0`, false}, // the float is ...992
		{`1e22`, `10000000000000000000000`, true},         // exactly representable
		{`1e23`, `100000000000000000000000`, false},       // 1e23 is 99999999999999991611392
		{`123456789012345678901234567890`, `123456789012345678901234567890`, true},
		{`123456789012345678901234567890`, `123456789012345678901234567891`, false},
		{`0.1`, `0.10`, true},
		{`0.1`, `0.2`, false},
		{`-2.5`, `-25e-1`, true},
		{`"1"`, `1`, false},
		{`"true"`, `true`, false},
		{`"e\u0301"`, `"é"`, false},
		{`"\u00e9"`, `"é"`, true},
		{`null`, `0`, false},
		{`null`, `false`, false},
		{`null`, `""`, false},
		{`null`, `null`, true},
		{`[true, 2]`, `[1, 2.0]`, true},
		{`[1, 2]`, `[2, 1]`, false},
		{`[1]`, `1`, false},
		{`{"a": true, "b": [0]}`, `{"b": [false], "a": 1.0}`, true},
		{`{"a": 1}`, `{"a": "1"}`, false},
		{`{"a": 1}`, `{"a": 1, "b": null}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.a+" vs "+tc.b, func(t *testing.T) {
			a, b := mustValue(t, tc.a), mustValue(t, tc.b)
			if got := a.Equal(b); got != tc.equal {
				t.Errorf("%s.Equal(%s) = %v (classes %s, %s), want %v", a, b, got, a.Class(), b.Class(), tc.equal)
			}
			if got := b.Equal(a); got != tc.equal {
				t.Errorf("not symmetric: %s.Equal(%s) = %v", b, a, got)
			}
			if (a.Class() == b.Class()) != tc.equal {
				t.Errorf("classes %s and %s disagree with Equal", a.Class(), b.Class())
			}
		})
	}
}

// TestValueKeepsItsType checks that canonicalising never turns a boolean
// into a number or a number into a boolean: states report values as the
// messages carried them.
func TestValueKeepsItsType(t *testing.T) {
	for raw, want := range map[string]attribution.Value{
		`true`:             `true`,
		`1`:                `1`,
		`1.0`:              `1`,
		`[true,1]`:         `[true,1]`,
		`9007199254740993`: `9007199254740993`,
	} {
		if got := mustValue(t, raw); got != want {
			t.Errorf("CanonicalValue(%s) = %s, want %s", raw, got, want)
		}
	}
}

// TestClassIsCanonical checks that a class is itself a canonical value
// whose class is itself, so classes can be stored and compared as values.
func TestClassIsCanonical(t *testing.T) {
	for _, raw := range []string{`true`, `-0.0`, `2.5`, `1e300`, `[true,{"a":false}]`, `"x"`, `null`, `123456789012345678901234567890`} {
		c := mustValue(t, raw).Class()
		if again := mustValue(t, string(c)); again != c {
			t.Errorf("class of %s is %s, which canonicalises to %s", raw, c, again)
		}
		if c.Class() != c {
			t.Errorf("class of class of %s is %s, want %s", raw, c.Class(), c)
		}
	}
}

// TestMajorityReportsFirstOccurrence checks the reported top value: the
// winning class's first occurrence in the recent window, as carried.
func TestMajorityReportsFirstOccurrence(t *testing.T) {
	th := attribution.DefaultThresholds()
	cases := []struct {
		values []string
		state  string
		value  attribution.Value
	}{
		{[]string{`1`, `true`, `true`, `false`, `true`}, attribution.StateStable, `1`},
		{[]string{`true`, `1`, `1`, `1`}, attribution.StateStable, `true`},
		{[]string{`true`, `1`, `true`, `false`, `1`}, attribution.StateStable, `true`},
		{[]string{`1.0`, `true`, `1`, `1`, `"1"`}, attribution.StateStable, `1`},
		{[]string{`"1"`, `1`, `"1"`, `1`}, attribution.StateMultiActor, `1`},
		{[]string{`true`, `0`, `1.0`, `-0.0`, `1`}, attribution.StateMultiActor, `1`},
		{[]string{`9007199254740993`, `9007199254740992`, `9007199254740992.0`, `9007199254740993`, `9007199254740992`}, attribution.StateMultiActor, `9007199254740992`},
		{[]string{`9007199254740993`, `9007199254740993`, `9007199254740992.0`, `9007199254740993`, `9007199254740993`}, attribution.StateStable, `9007199254740993`},
	}
	for _, tc := range cases {
		points := make([]attribution.Point, len(tc.values))
		for i, raw := range tc.values {
			points[i] = attribution.Point{TS: float64(i), Ref: string(rune('a' + i)), Value: mustValue(t, raw)}
		}
		got := attribution.Merge(attribution.Categorical, points, th)
		if got.State != tc.state || got.CurrentValue != tc.value {
			t.Errorf("%v: %s %s, want %s %s", tc.values, got.State, got.CurrentValue, tc.state, tc.value)
		}
	}
}

// TestHashDistinctByClass counts {1, 1.0, true} as one hash.
func TestHashDistinctByClass(t *testing.T) {
	th := attribution.DefaultThresholds()
	var points []attribution.Point
	for i, raw := range []string{`1`, `1.0`, `true`, `"1"`} {
		points = append(points, attribution.Point{TS: float64(i), Ref: "r", Value: mustValue(t, raw)})
	}
	whole := attribution.Merge(attribution.Hash, points, th)
	if whole.State != attribution.StateDrifting || whole.Confidence != 0.5 {
		t.Errorf("whole-series merge: %+v, want drifting with one rotation", whole)
	}
	s := attribution.EmptySeries(attribution.Hash, th)
	for _, p := range points {
		s.Add(p)
	}
	if got := s.State(th); got != whole {
		t.Errorf("incremental %+v, whole %+v", got, whole)
	}
}
