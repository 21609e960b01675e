package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"decnet-attribution/internal/attribution"
)

// errHelp is returned when a command printed its help.
var errHelp = errors.New("help shown")

// newFlagSet returns a flag set that prints its usage to stdout on --help.
func newFlagSet(name, synopsis, description string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: attribution %s\n\n%s\nFlags:\n", synopsis, description)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, turning --help into errHelp and other mistakes
// into errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// loadRegistry returns the built-in registry with the overrides of a JSON
// file, if one is named.
func loadRegistry(path string) (attribution.Registry, error) {
	reg := attribution.BuiltinRegistry()
	if path == "" {
		return reg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read registry: %w", err)
	}
	reg, err = reg.WithOverrides(data)
	if err != nil {
		return nil, fmt.Errorf("registry file %s: %w", path, err)
	}
	return reg, nil
}
