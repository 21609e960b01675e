// Command chaos runs the chaos scenarios of internal/testrig/chaos against a local
// AWS (a moto server it starts) and prints one summary per scenario:
// messages sent, redeliveries, faults injected by kind, crashes, retries
// and the verdicts. It exits 1 when any verdict is violated, 2 when the
// harness itself fails.
//
//	go run ./internal/testrig/cmd/chaos                      # every scenario, full size
//	go run ./internal/testrig/cmd/chaos -small               # the sizes `go test` uses
//	go run ./internal/testrig/cmd/chaos -run concurrent-hot  # some scenarios (comma-separated)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"decnet-attribution/internal/testrig/chaos"
	"decnet-attribution/internal/testrig/devstack"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("run", "", "comma-separated scenario names (default: all)")
	small := fs.Bool("small", false, "run the small sizes of `go test` instead of the full ones")
	endpoint := fs.String("endpoint", "", "use this AWS endpoint (a running moto server) instead of starting one")
	workDir := fs.String("workdir", "", "directory for crash markers, applied logs and function logs (default: a temporary one, removed)")
	rie := fs.String("rie", "", "Runtime Interface Emulator (default: $AWS_LAMBDA_RIE or .local/bin/aws-lambda-rie)")
	quiet := fs.Bool("q", false, "no progress lines on standard error")
	list := fs.Bool("list", false, "list the scenarios and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	scenarios := chaos.Scenarios(!*small)
	if *list {
		for _, sc := range scenarios {
			fmt.Fprintf(stdout, "%s (%d poller(s), %d observations)\n", sc.Name, max(sc.Pollers, 1), sc.Stream.Observations)
		}
		return 0
	}
	if *only != "" {
		var picked []chaos.Scenario
		for _, name := range strings.Split(*only, ",") {
			found := false
			for _, sc := range scenarios {
				if sc.Name == strings.TrimSpace(name) {
					picked, found = append(picked, sc), true
				}
			}
			if !found {
				fmt.Fprintf(stderr, "chaos: no scenario %q (see -list)\n", name)
				return 2
			}
		}
		scenarios = picked
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env, cleanup, err := setup(ctx, *endpoint, *workDir, *rie, needsEmulator(scenarios), stderr)
	defer cleanup()
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 2
	}
	if !*quiet {
		env.Progress = stderr
	}
	if err := chaos.Warm(ctx, env); err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 2
	}
	failed := 0
	for _, sc := range scenarios {
		rep, err := chaos.Run(ctx, env, sc)
		if err != nil {
			fmt.Fprintf(stderr, "chaos: scenario %s: %v\n", sc.Name, err)
			return 2
		}
		rep.Write(stdout)
		if !rep.OK() {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "chaos: %d of %d scenario(s) violated their verdicts\n", failed, len(scenarios))
		return 1
	}
	fmt.Fprintf(stdout, "chaos: all %d scenario(s) passed\n", len(scenarios))
	return 0
}

func needsEmulator(scenarios []chaos.Scenario) bool {
	for _, sc := range scenarios {
		if sc.Emulator {
			return true
		}
	}
	return false
}

// setup finds the repository, starts moto unless an endpoint is given and
// builds the crash binary when a scenario needs the emulator.
func setup(ctx context.Context, endpoint, workDir, rie string, emulator bool, stderr io.Writer) (chaos.Env, func(), error) {
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	root, err := devstack.RepoRoot()
	if err != nil {
		return chaos.Env{}, cleanup, err
	}
	tmpl, err := devstack.LoadTemplate(filepath.Join(root, "template.yaml"))
	if err != nil {
		return chaos.Env{}, cleanup, err
	}
	if workDir == "" {
		if workDir, err = os.MkdirTemp("", "chaos-"); err != nil {
			return chaos.Env{}, cleanup, err
		}
		dir := workDir
		cleanups = append(cleanups, func() { _ = os.RemoveAll(dir) })
	} else if err := os.MkdirAll(workDir, 0o755); err != nil {
		return chaos.Env{}, cleanup, err
	}
	env := chaos.Env{Template: tmpl, WorkDir: workDir, Endpoint: endpoint}
	if emulator {
		if rie == "" {
			if rie, err = devstack.FindRIE(root); err != nil {
				return env, cleanup, fmt.Errorf("the emulator scenarios need it: %w", err)
			}
		}
		env.RIE = rie
		env.CrashBootstrap = filepath.Join(workDir, "crashfn", "bootstrap")
		if err := devstack.BuildBootstrap(ctx, devstack.Build{Root: root, Package: "./internal/testrig/chaos/crashfn", Out: env.CrashBootstrap}); err != nil {
			return env, cleanup, err
		}
	}
	if env.Endpoint == "" {
		fmt.Fprintln(stderr, "chaos: starting moto")
		m, err := devstack.StartMoto(devstack.MotoOptions{})
		if err != nil {
			return env, cleanup, err
		}
		cleanups = append(cleanups, func() { _ = m.Stop() })
		env.Endpoint = m.Endpoint
	}
	return env, cleanup, nil
}
