package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"decnet-attribution/internal/testrig/devstack"
)

// workspace locates the files of a local stack under <root>/.local.
type workspace struct{ root string }

func newWorkspace(root string) workspace { return workspace{root: root} }

func (w workspace) local(parts ...string) string {
	return filepath.Join(append([]string{w.root, ".local"}, parts...)...)
}

func (w workspace) envFile() string  { return w.local("stack.env") }
func (w workspace) template() string { return filepath.Join(w.root, "template.yaml") }

// pidFiles are the processes up starts, by the text their command line
// must contain for down to stop them.
func (w workspace) pidFiles() map[string]string {
	return map[string]string{
		w.local("rie.pid"):  "aws-lambda-rie",
		w.local("moto.pid"): "moto.server",
		w.local("esm.pid"):  " esm -queue-url ",
	}
}

// startOptions tune startStack.
type startOptions struct {
	port      int               // moto port; 0: free
	stackName string            // AWS::StackName
	params    map[string]string // template parameter overrides
	bootstrap string            // prebuilt bootstrap; empty: build ./functions/attribution
	buildTo   string            // where to build the bootstrap
	detach    bool              // processes outlive this command
	logDir    string
	out       io.Writer // progress messages
}

// localStack is a running local stack.
type localStack struct {
	stack    *devstack.Stack
	moto     *devstack.Moto // nil when an endpoint was already running
	emulator *devstack.Emulator
}

// stop stops what startStack started.
func (l *localStack) stop() error {
	var errs []error
	if l.emulator != nil {
		errs = append(errs, l.emulator.Stop())
	}
	if l.moto != nil {
		errs = append(errs, l.moto.Stop())
	}
	return errors.Join(errs...)
}

// startStack starts moto (unless AWS_ENDPOINT_URL answers), provisions the
// template, builds the bootstrap and starts the emulator. On error it stops
// whatever it had started.
func startStack(ctx context.Context, ws workspace, o startOptions) (_ *localStack, err error) {
	tmpl, err := devstack.LoadTemplate(ws.template())
	if err != nil {
		return nil, err
	}
	rie, err := devstack.FindRIE(ws.root)
	if err != nil {
		return nil, err
	}
	bootstrap := o.bootstrap
	if bootstrap == "" {
		bootstrap = o.buildTo
		fmt.Fprintf(o.out, "building ./functions/attribution for this machine → %s\n", rel(ws, bootstrap))
		if err := devstack.BuildBootstrap(ctx, devstack.Build{Root: ws.root, Package: devstack.FunctionPackage, Out: bootstrap}); err != nil {
			return nil, err
		}
	}

	l := &localStack{}
	defer func() {
		if err != nil {
			if stopErr := l.stop(); stopErr != nil {
				err = errors.Join(err, stopErr)
			}
		}
	}()

	endpoint := os.Getenv("AWS_ENDPOINT_URL")
	if endpoint != "" && devstack.Answers(ctx, endpoint) {
		fmt.Fprintf(o.out, "using the AWS endpoint already running at %s\n", endpoint)
	} else {
		l.moto, err = devstack.StartMoto(devstack.MotoOptions{
			Port:    o.port,
			LogPath: filepath.Join(o.logDir, "moto.log"),
			Detach:  o.detach,
		})
		if err != nil {
			return l, err
		}
		endpoint = l.moto.Endpoint
		fmt.Fprintf(o.out, "moto listening on %s (pid %d)\n", endpoint, l.moto.Process.PID())
	}

	l.stack, err = devstack.Provision(ctx, devstack.NewClients(devstack.AWSConfig(endpoint, devstack.DefaultRegion)), tmpl, devstack.Options{
		StackName:  o.stackName,
		Parameters: o.params,
		Endpoint:   endpoint,
	})
	if err != nil {
		return l, fmt.Errorf("provision %s: %w", ws.template(), err)
	}
	fmt.Fprintf(o.out, "provisioned stack %s from template.yaml\n", l.stack.Name)
	for _, n := range l.stack.Notes {
		fmt.Fprintf(o.out, "  note: %s\n", n)
	}

	l.emulator, err = devstack.StartEmulator(devstack.EmulatorOptions{
		RIE:       rie,
		Bootstrap: bootstrap,
		Env:       l.stack.LambdaEnv(),
		LogPath:   filepath.Join(o.logDir, "lambda.log"),
		Detach:    o.detach,
	})
	if err != nil {
		return l, err
	}
	fmt.Fprintf(o.out, "function running under the Runtime Interface Emulator (pid %d), invoke URL %s\n", l.emulator.Process.PID(), l.emulator.InvokeURL)
	return l, nil
}

// envLines are the KEY=value lines of .local/stack.env.
func (l *localStack) envLines() []string {
	env := l.stack.EnvMap()
	env["STACK_NAME"] = l.stack.Name
	env["LAMBDA_INVOKE_URL"] = l.emulator.InvokeURL
	lines := make([]string, 0, len(env))
	for k, v := range env {
		lines = append(lines, k+"="+v)
	}
	sort.Strings(lines)
	return lines
}

// samEnv is the --env-vars file of `sam local invoke`. SAM overrides only
// the variables the template declares and drops the rest, so it holds
// exactly those, pointed at this stack (AWS_ENDPOINT_URL included, which
// the template declares empty for this). Region and credentials are not
// variables the template can declare (Lambda reserves them): sam local
// takes them from its own flags and profile, and moto accepts any. host
// replaces the endpoint's host: a container reaches the stack at
// host.docker.internal, or at 127.0.0.1 with --docker-network host.
func (l *localStack) samEnv(host string) ([]byte, error) {
	all := l.stack.EnvMap()
	vars := map[string]string{}
	for k := range l.stack.Function.Environment {
		vars[k] = all[k]
	}
	if host != "" {
		u, err := url.Parse(vars["AWS_ENDPOINT_URL"])
		if err != nil {
			return nil, fmt.Errorf("endpoint %q: %w", vars["AWS_ENDPOINT_URL"], err)
		}
		u.Host = net.JoinHostPort(host, u.Port())
		vars["AWS_ENDPOINT_URL"] = u.String()
	}
	return json.MarshalIndent(map[string]map[string]string{devstack.AttributionFunctionID: vars}, "", "  ")
}

func readEnvFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return devstack.ParseEnv(strings.Split(string(b), "\n")), nil
}

func writePID(path string, pid int) error {
	return os.WriteFile(path, []byte(strconv.Itoa(pid)+"\n"), 0o644)
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s does not hold a PID", path)
	}
	return pid, nil
}

// stopRecorded stops the processes recorded in the workspace's PID files
// and removes the files. It reports what it stopped.
func stopRecorded(ws workspace, out io.Writer) error {
	var errs []error
	for file, want := range ws.pidFiles() {
		pid, err := readPID(file)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			_ = os.Remove(file)
			continue
		}
		found, err := devstack.StopPID(pid, want, 5*time.Second)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("stop %s (pid %d): %w", want, pid, err))
			continue // keep the file: the process may still run
		case found:
			fmt.Fprintf(out, "stopped %s (pid %d)\n", want, pid)
		default:
			fmt.Fprintf(out, "%s (pid %d) was not running\n", want, pid)
		}
		_ = os.Remove(file)
	}
	return errors.Join(errs...)
}

func rel(ws workspace, path string) string {
	if r, err := filepath.Rel(ws.root, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}
