package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"decnet-attribution/internal/testrig/devstack"
)

// cmdUp starts the stack in the background and records it in .local.
func cmdUp(ctx context.Context, ws workspace, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	port := fs.Int("port", 0, "moto port (default: a free port)")
	stackName := fs.String("stack", "decnet-local", "stack name (prefix of the resource names)")
	bootstrap := fs.String("bootstrap", "", "run this prebuilt bootstrap instead of building ./functions/attribution")
	samHost := fs.String("sam-host", "", "host of the endpoint written to .local/sam-env.json (e.g. host.docker.internal); default: the stack's own")
	params := paramFlag{}
	fs.Var(params, "param", "template parameter override KEY=VALUE (repeatable)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errUsage
	}
	for file, want := range ws.pidFiles() {
		if pid, err := readPID(file); err == nil && devstack.ProcessRuns(pid, want) {
			return fmt.Errorf("a local stack is already up (%s pid %d): run `localstack down` first", want, pid)
		}
	}
	if err := os.MkdirAll(ws.local("logs"), 0o755); err != nil {
		return err
	}
	l, err := startStack(ctx, ws, startOptions{
		port:      *port,
		stackName: *stackName,
		params:    params,
		bootstrap: *bootstrap,
		buildTo:   ws.local("bootstrap"),
		detach:    true,
		logDir:    ws.local("logs"),
		out:       os.Stdout,
	})
	if err != nil {
		return err
	}
	record := func() error {
		if l.moto != nil {
			if err := writePID(ws.local("moto.pid"), l.moto.Process.PID()); err != nil {
				return err
			}
		}
		if err := writePID(ws.local("rie.pid"), l.emulator.Process.PID()); err != nil {
			return err
		}
		mapping, err := startDetachedMapping(ws, l.stack, l.emulator.InvokeURL)
		if err != nil {
			return fmt.Errorf("start the event source mapping: %w", err)
		}
		if err := writePID(ws.local("esm.pid"), mapping.PID()); err != nil {
			return err
		}
		fmt.Printf("event source mapping %s → function (batch size %d, window %s; pid %d)\n",
			l.stack.Function.EventSources[0].QueueLogicalID, l.stack.Function.EventSources[0].BatchSize,
			l.stack.Function.EventSources[0].MaximumBatchingWindow, mapping.PID())
		sam, err := l.samEnv(*samHost)
		if err != nil {
			return err
		}
		if err := os.WriteFile(ws.local("sam-env.json"), sam, 0o644); err != nil {
			return err
		}
		return os.WriteFile(ws.envFile(), []byte(strings.Join(l.envLines(), "\n")+"\n"), 0o644)
	}
	if err := record(); err != nil {
		return errors.Join(fmt.Errorf("record the stack in %s: %w", ws.local(), err), l.stop(), stopRecorded(ws, os.Stdout))
	}
	fmt.Printf("\nstack is up; environment in %s, logs in %s\n", rel(ws, ws.envFile()), rel(ws, ws.local("logs")))
	fmt.Println("  send:    set -a; . .local/stack.env; set +a; go run ./cmd/attribution send FILE  (processed by the mapping)")
	fmt.Println("  invoke:  go run ./internal/testrig/cmd/localstack invoke events/sqs-single-observation.json")
	fmt.Println("  stop:    go run ./internal/testrig/cmd/localstack down")
	return nil
}

// cmdDown stops what up started.
func cmdDown(ws workspace) error {
	if err := stopRecorded(ws, os.Stdout); err != nil {
		return err
	}
	for _, f := range []string{ws.envFile(), ws.local("sam-env.json")} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// cmdInvoke posts an SQS event file to the running function.
func cmdInvoke(ctx context.Context, ws workspace, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%w (invoke takes one event file)", errUsage)
	}
	env, err := readEnvFile(ws.envFile())
	if err != nil {
		return fmt.Errorf("no local stack is up (%w): run `localstack up` first", err)
	}
	url := env["LAMBDA_INVOKE_URL"]
	if url == "" {
		return fmt.Errorf("%s has no LAMBDA_INVOKE_URL", ws.envFile())
	}
	payload, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	res, err := devstack.Invoke(ctx, url, payload)
	if err != nil {
		return err
	}
	fmt.Println(prettyJSON(res.Body))
	if res.StatusCode != 200 {
		return fmt.Errorf("the emulator answered %d (function output: %s)", res.StatusCode, rel(ws, ws.local("logs", "lambda.log")))
	}
	if typ, _, ok := res.FunctionError(); ok {
		return fmt.Errorf("the function failed with %s", typ)
	}
	if res.TimedOut() {
		return errors.New("the function timed out")
	}
	return nil
}

// cmdRun starts a stack of its own, invokes the event fixtures, reports
// states and alerts, and stops the stack.
func cmdRun(ctx context.Context, ws workspace, args []string) (err error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	port := fs.Int("port", 0, "moto port (default: a free port)")
	bootstrap := fs.String("bootstrap", "", "run this prebuilt bootstrap instead of building ./functions/attribution")
	noDecnet := fs.Bool("no-decnet", false, "only invoke the fixtures; skip the DECNET bus → bridge → queue → bus path")
	params := paramFlag{"PublishBackToDecnet": "true"}
	fs.Var(params, "param", "template parameter override KEY=VALUE (repeatable)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	files := fs.Args()
	if len(files) == 0 {
		if files, err = filepath.Glob(filepath.Join(ws.root, "events", "*.json")); err != nil {
			return err
		}
		if len(files) == 0 {
			return fmt.Errorf("no event fixtures in %s", filepath.Join(ws.root, "events"))
		}
	}
	fixtures, err := orderFixtures(files)
	if err != nil {
		return err
	}

	logDir := ws.local("logs", "run")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	for _, f := range []string{"moto.log", "lambda.log"} {
		_ = os.Remove(filepath.Join(logDir, f)) // logs of this run only
	}
	l, err := startStack(ctx, ws, startOptions{
		port:      *port,
		stackName: devstack.UniqueName("decnet-run-"),
		params:    params,
		bootstrap: *bootstrap,
		buildTo:   ws.local("run", "bootstrap"),
		logDir:    logDir,
		out:       os.Stdout,
	})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("\nstopping the local stack")
		if stopErr := l.stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
	}()

	fmt.Printf("\n== invoking %d event fixtures\n", len(fixtures))
	for _, f := range fixtures {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := invokeFixture(ctx, ws, l, f); err != nil {
			return err
		}
	}
	if !*noDecnet {
		if err := runDecnetPath(ctx, ws, l, logDir, os.Stdout); err != nil {
			return err
		}
	}
	if err := printReport(ctx, os.Stdout, l.stack); err != nil {
		return err
	}
	fmt.Printf("\nfunction output: %s\n", rel(ws, filepath.Join(logDir, "lambda.log")))
	return nil
}

func invokeFixture(ctx context.Context, ws workspace, l *localStack, f fixture) error {
	payload, err := os.ReadFile(f.path)
	if err != nil {
		return err
	}
	fmt.Printf("\n-- %s (%d message%s)\n", rel(ws, f.path), f.records, plural(f.records))
	res, err := l.emulator.Invoke(ctx, payload)
	if err != nil {
		return err
	}
	switch typ, msg, isErr := res.FunctionError(); {
	case res.StatusCode != 200:
		fmt.Printf("   emulator status %d: %s\n", res.StatusCode, bytes.TrimSpace(res.Body))
	case res.TimedOut():
		fmt.Printf("   timed out: %s\n", res.Body)
	case isErr:
		fmt.Printf("   function error %s: %s\n", typ, msg)
	default:
		var resp struct {
			BatchItemFailures []struct {
				ItemIdentifier string `json:"itemIdentifier"`
			} `json:"batchItemFailures"`
		}
		if err := json.Unmarshal(res.Body, &resp); err != nil {
			fmt.Printf("   response: %s\n", res.Body)
			break
		}
		if len(resp.BatchItemFailures) == 0 {
			fmt.Printf("   no batch item failures\n")
			break
		}
		fmt.Printf("   %d of %d reported as batch item failures (SQS would redeliver them, then move them to the DLQ):\n", len(resp.BatchItemFailures), f.records)
		for _, item := range resp.BatchItemFailures {
			fmt.Printf("     %s\n", item.ItemIdentifier)
		}
	}
	return printDeadLetters(ctx, os.Stdout, l.stack)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func prettyJSON(b []byte) string {
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") != nil {
		return string(b)
	}
	return out.String()
}
