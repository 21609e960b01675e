package devstack

import (
	"errors"
	"os"
	"path/filepath"
)

// RepoRoot returns the directory of the go.mod above the working
// directory: where template.yaml, events/ and .local/ are.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the repository: no go.mod above the working directory")
		}
		dir = parent
	}
}
