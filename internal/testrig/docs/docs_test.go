// Package docs_test keeps the README's generated parts equal to their
// sources.
package docs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReadmeBadInputCatalogue: the README's catalogue of malformed messages
// is the one generated from the decoder.
func TestReadmeBadInputCatalogue(t *testing.T) {
	readme := mustRead(t, "README.md")
	start := strings.Index(readme, "<!-- bad-input:start -->")
	end := strings.Index(readme, "<!-- bad-input:end -->")
	if start < 0 || end < start {
		t.Fatal("README.md has no bad-input catalogue between its markers")
	}
	embedded := strings.TrimSpace(readme[start+len("<!-- bad-input:start -->") : end])
	generated := mustRead(t, "internal/testrig/chaos/BAD_INPUT.md")
	if _, rest, ok := strings.Cut(generated, "\n"); ok && strings.HasPrefix(generated, "<!--") {
		generated = rest
	}
	if embedded != strings.TrimSpace(generated) {
		t.Fatal("README.md's bad-input catalogue differs from internal/testrig/chaos/BAD_INPUT.md: copy the generated table between the markers")
	}
}
