package chaos_test

import (
	"flag"
	"os"
	"strings"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/testrig/chaos"
)

var update = flag.Bool("update", false, "rewrite BAD_INPUT.md from the decoder's errors")

// TestBadInputCatalogue keeps BAD_INPUT.md equal to what the decoder and
// the configuration reader say today; -update rewrites it.
func TestBadInputCatalogue(t *testing.T) {
	const path = "BAD_INPUT.md"
	got := chaos.BadInputTable()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/testrig/chaos -run TestBadInputCatalogue -update)", err)
	}
	if string(want) != got {
		t.Errorf("%s is out of date: run go test ./internal/testrig/chaos -run TestBadInputCatalogue -update\n--- generated now:\n%s", path, got)
	}
}

// TestBadInputsAreRejected checks every catalogued class is rejected as
// invalid (so it goes to the dead-letter queue, not into a retry loop),
// whatever its tag, and that each class is distinct.
func TestBadInputsAreRejected(t *testing.T) {
	reg := attribution.BuiltinRegistry()
	seen := map[string]bool{}
	for _, bi := range chaos.BadInputs() {
		t.Run(bi.Class, func(t *testing.T) {
			if seen[bi.Class] {
				t.Fatalf("class %q listed twice", bi.Class)
			}
			seen[bi.Class] = true
			a, b := bi.Body("tag-a"), bi.Body("tag-b")
			if a == b {
				t.Errorf("the tag does not make bodies unique: %s", a)
			}
			errA, errB := chaos.Rejection(a, reg), chaos.Rejection(b, reg)
			if errA == nil || attribution.ErrorCode(errA) != attribution.EINVALID {
				t.Fatalf("Rejection = %v, want an invalid-input error", errA)
			}
			if errB == nil || errA.Error() != errB.Error() {
				t.Errorf("the error depends on the tag: %v / %v", errA, errB)
			}
		})
	}
	for _, br := range chaos.BadRegistries() {
		if err := chaos.StartupError(br.Registry); err == nil || !strings.HasPrefix(err.Error(), "ATTRIBUTION_REGISTRY: ") {
			t.Errorf("registry %s: startup error %v, want one about ATTRIBUTION_REGISTRY", br.Registry, err)
		}
	}
	if err := chaos.StartupError(`{"motor.input_modality":"numeric"}`); err != nil {
		t.Errorf("a valid registry fails: %v", err)
	}
}
