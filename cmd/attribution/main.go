// Command attribution is the operators' tool for the attribution engine:
// replay observation streams in memory (calibration, backfill checks),
// send observations to the queue, show an identity's states, and rebuild
// every state after a threshold or registry change.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// exitBadInput is the status when some input was rejected but the rest ran.
const exitBadInput = 1

// errUsage marks a command-line mistake (exit status 2).
var errUsage = errors.New("usage")

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"replay", "run observation messages through the engine in memory and print transitions and states", runReplay},
		{"send", "check observation messages and send them to the observation queue", runSend},
		{"state", "show the states of one identity or attacker from DynamoDB", runState},
		{"rebuild", "recompute every state from the stored observations after a threshold or registry change", runRebuild},
		{"backfill", "send the observations stored in DECNET's database (sqlite or mysql) to the queue", runBackfill},
		{"bridge", "forward DECNET's bus to the observation queue, and the service's events back onto the bus", runBridge},
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `attribution: the attribution engine's command-line tool.

Usage:
  attribution <command> [flags] [args]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "attribution <command> --help" for a command's flags.
Thresholds are read from ATTRIBUTION_* environment variables (see README).
send, state, rebuild, bridge and backfill work on a deployed stack: name it with --stack, or
name its resources with flags or the function's environment variables;
--endpoint-url (or AWS_ENDPOINT_URL) points them at a local stack.
`)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdin, stdout, stderr)
		var bad *badInputError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, errHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		case errors.As(err, &bad):
			fmt.Fprintf(stderr, "attribution %s: %v\n", c.name, err)
			return exitBadInput
		default:
			fmt.Fprintf(stderr, "attribution %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "attribution: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// badInputError reports that some input lines were rejected.
type badInputError struct{ bad, total int }

func (e *badInputError) Error() string {
	return fmt.Sprintf("%d of %d input lines were rejected (see the messages above)", e.bad, e.total)
}
