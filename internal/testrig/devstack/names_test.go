package devstack_test

import (
	"testing"

	"decnet-attribution/internal/testrig/devstack"
)

func TestUniqueName(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		n := devstack.UniqueName("x-")
		if seen[n] || len(n) != len("x-")+10 {
			t.Fatalf("UniqueName gave %q (seen before: %v)", n, seen[n])
		}
		seen[n] = true
	}
}
