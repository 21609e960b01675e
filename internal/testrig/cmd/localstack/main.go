// Command localstack runs the attribution stack on this machine: moto for
// the AWS APIs, the resources of template.yaml provisioned into it, and the
// function's real bootstrap under the Lambda Runtime Interface Emulator.
//
// Usage:
//
//	localstack [-root DIR] up [-port N] [-stack NAME] [-param K=V]... [-bootstrap FILE]
//	localstack [-root DIR] down
//	localstack [-root DIR] invoke FILE
//	localstack [-root DIR] run [-port N] [-param K=V]... [-bootstrap FILE] [-no-decnet] [FILE...]
//	localstack esm -queue-url URL -invoke-url URL -endpoint URL [-batch-size N] [-window D]
//
// up starts moto (unless AWS_ENDPOINT_URL already answers), provisions the
// template, builds the function for this machine (.local/bootstrap),
// starts the emulator and the SQS event source mapping (the project's own,
// internal/testrig/sqspoller, with the template's batch size and window), so messages
// sent to the observation queue are processed as in AWS. The processes keep running after up exits; their
// PIDs are in .local/*.pid, their output in .local/logs/, and
// .local/stack.env holds KEY=value lines for the stack (endpoint, tables,
// queues, bus, LAMBDA_INVOKE_URL). down stops them.
//
// invoke posts an SQS event (e.g. events/sqs-single-observation.json) to
// the running function and prints its response.
//
// esm runs an event source mapping in the foreground (up starts one in
// the background).
//
// run does all of it in one go with processes of its own: up (with
// PublishBackToDecnet=true), invoke every events/*.json fixture (or the
// files given), then the DECNET path — a DECNET-like publisher on a local
// bus, the bridge, the queue and the event source mapping, the function,
// and the events back on the bus — print the resulting states and the
// alerts the EventBridge rule delivered, and stop everything, also on
// error or interrupt (-no-decnet skips the DECNET path).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "localstack:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: localstack [-root DIR] up|down|invoke FILE|run [flags]")

func run(ctx context.Context, args []string) error {
	global := flag.NewFlagSet("localstack", flag.ContinueOnError)
	root := global.String("root", "", "repository root (default: the directory of go.mod above the working directory)")
	if err := global.Parse(args); err != nil {
		return errUsage
	}
	if global.NArg() == 0 {
		return errUsage
	}
	dir, err := findRoot(*root)
	if err != nil {
		return err
	}
	ws := newWorkspace(dir)
	cmd, rest := global.Arg(0), global.Args()[1:]
	switch cmd {
	case "up":
		return cmdUp(ctx, ws, rest)
	case "down":
		return cmdDown(ws)
	case "invoke":
		return cmdInvoke(ctx, ws, rest)
	case "run":
		return cmdRun(ctx, ws, rest)
	case "esm":
		return cmdMapping(ctx, rest)
	default:
		return fmt.Errorf("%w (unknown command %q)", errUsage, cmd)
	}
}

// findRoot returns dir, or the nearest directory holding go.mod.
func findRoot(dir string) (string, error) {
	if dir != "" {
		return filepath.Abs(dir)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s; pass -root", wd)
		}
	}
}

// paramFlag collects repeated -param KEY=VALUE flags.
type paramFlag map[string]string

func (p paramFlag) String() string { return fmt.Sprint(map[string]string(p)) }

func (p paramFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("-param %q is not KEY=VALUE", s)
	}
	p[k] = v
	return nil
}
