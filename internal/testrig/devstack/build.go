package devstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// FunctionPackage is the Lambda's main package, relative to the repository.
const FunctionPackage = "./functions/attribution"

// Build says how to build a Lambda main package as a bootstrap.
type Build struct {
	Root    string // the repository (go.mod's directory)
	Package string // e.g. FunctionPackage or "./internal/testrig/chaos/crashfn"
	Out     string // the binary to write
	// GOOS and GOARCH select the target; empty: the host.
	GOOS, GOARCH string
	// Release strips paths and symbols as the Makefile's Lambda build does;
	// otherwise only the Lambda build tag is set.
	Release bool
}

// BuildBootstrap builds b.Package with -tags lambda.norpc and CGO disabled,
// as production builds it.
func BuildBootstrap(ctx context.Context, b Build) error {
	args := []string{"build", "-tags", "lambda.norpc"}
	if b.Release {
		args = append(args, "-trimpath", "-ldflags=-s -w")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "-o", b.Out, b.Package)...)
	cmd.Dir = b.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b.GOOS != "" {
		cmd.Env = append(cmd.Env, "GOOS="+b.GOOS)
	}
	if b.GOARCH != "" {
		cmd.Env = append(cmd.Env, "GOARCH="+b.GOARCH)
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %w\n%s", b.Package, err, msg)
	}
	return nil
}

// FindRIE returns the pinned Runtime Interface Emulator: $AWS_LAMBDA_RIE,
// else .local/bin/aws-lambda-rie under root, where `make tools` installs it.
func FindRIE(root string) (string, error) {
	path := os.Getenv("AWS_LAMBDA_RIE")
	if path == "" {
		path = filepath.Join(root, ".local", "bin", "aws-lambda-rie")
	}
	if _, err := os.Stat(path); err != nil {
		return path, fmt.Errorf("the Lambda Runtime Interface Emulator is not installed at %s: run `make tools` (or `make test`, which installs it): %w", path, err)
	}
	return path, nil
}

// UniqueName returns prefix followed by a random suffix, for resources
// that must not collide with others on a shared endpoint.
func UniqueName(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:]) // documented never to return an error
	return prefix + hex.EncodeToString(b[:])
}
