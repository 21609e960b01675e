package bench

import "testing"

func TestDollars(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{0.625, "$0.625"},
		{0.4, "$0.40"},
		{2.5, "$2.50"},
		{13.37499, "$13.375"},
		{129.375, "$129.375"},
		{0, "$0.00"},
	} {
		if got := dollars(tc.in); got != tc.want {
			t.Errorf("dollars(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
