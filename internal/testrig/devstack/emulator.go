package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// RIEModule is the pinned Runtime Interface Emulator; the Makefile's tools
// target installs the same version into .local/bin.
const RIEModule = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d"

// InvokePath is the emulator's invoke endpoint.
const InvokePath = "/2015-03-31/functions/function/invocations"

// EmulatorOptions tune StartEmulator.
type EmulatorOptions struct {
	// RIE is the path of the aws-lambda-rie binary. Required.
	RIE string
	// Bootstrap is the function's executable (a Go binary built with
	// -tags lambda.norpc for the host). Required.
	Bootstrap string
	// Env is the function's complete environment, e.g. Stack.LambdaEnv().
	// The emulator passes its own environment to the function and sets
	// AWS_LAMBDA_RUNTIME_API itself; nothing of the caller's leaks in.
	Env []string
	// Host and Port of the invoke endpoint. Defaults 127.0.0.1 and a free
	// port.
	Host string
	Port int
	// RuntimeAPIPort is where the emulator serves the Runtime API to the
	// function. Default a free port (the emulator's own default, 9001, would
	// keep two emulators from running side by side).
	RuntimeAPIPort int
	// LogLevel of the emulator: error, warn, info, debug. Default info.
	LogLevel string
	// LogPath receives the output of the emulator and of the function;
	// empty keeps it in memory (Process.Output).
	LogPath string
	// Detach lets the emulator outlive the caller (see ProcessOptions).
	Detach bool
	// StartTimeout bounds the wait for the invoke endpoint. Default 15s.
	StartTimeout time.Duration
}

// Emulator is a running Runtime Interface Emulator. It starts the function's
// bootstrap on the first invocation and again after the function process
// dies.
type Emulator struct {
	// InvokeURL is http://HOST:PORT/2015-03-31/functions/function/invocations.
	InvokeURL string
	Process   *Process
}

// StartEmulator starts the emulator with the given bootstrap and
// environment and waits until its invoke endpoint accepts connections.
func StartEmulator(opts EmulatorOptions) (*Emulator, error) {
	if opts.RIE == "" || opts.Bootstrap == "" {
		return nil, errors.New("start emulator: RIE and Bootstrap are required")
	}
	bootstrap, err := filepath.Abs(opts.Bootstrap)
	if err != nil {
		return nil, fmt.Errorf("start emulator: %w", err)
	}
	if st, err := os.Stat(bootstrap); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("start emulator: bootstrap %s is not an executable file (%v)", bootstrap, err)
	}
	if _, err := os.Stat(opts.RIE); err != nil {
		return nil, fmt.Errorf("start emulator: aws-lambda-rie not found at %s (run `make tools`): %w", opts.RIE, err)
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 15 * time.Second
	}
	for _, port := range []*int{&opts.Port, &opts.RuntimeAPIPort} {
		if *port == 0 {
			if *port, err = FreePort(); err != nil {
				return nil, err
			}
		}
	}
	addr := net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port))
	env := append([]string{}, opts.Env...) // never nil: nil would inherit ours
	p, err := StartProcess(ProcessOptions{
		Name: "lambda runtime interface emulator",
		Path: opts.RIE,
		Args: []string{
			"--log-level", opts.LogLevel,
			"--runtime-interface-emulator-address", addr,
			"--runtime-api-address", net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.RuntimeAPIPort)),
			bootstrap,
		},
		Env:     env,
		Dir:     filepath.Dir(bootstrap),
		LogPath: opts.LogPath,
		Detach:  opts.Detach,
	})
	if err != nil {
		return nil, err
	}
	if err := waitListening(p, addr, opts.StartTimeout); err != nil {
		_ = p.Stop(time.Second)
		return nil, err
	}
	return &Emulator{InvokeURL: "http://" + addr + InvokePath, Process: p}, nil
}

// Stop stops the emulator and the function process.
func (e *Emulator) Stop() error {
	return e.Process.Stop(5 * time.Second)
}

// RuntimePIDs returns the PIDs of the function processes the emulator is
// running (none before the first invocation).
func (e *Emulator) RuntimePIDs() []int {
	return childPIDs(e.Process.PID())
}

// KillRuntime kills the function process with sig, as a crash or an
// out-of-memory kill would, waits until the emulator has reaped it, and
// reports how many processes it signalled.
//
// As in Lambda, the death is not silent: the emulator answers the next
// invocation with a Runtime.ExitError (status 502) and starts a fresh
// function process for the one after.
func (e *Emulator) KillRuntime(sig syscall.Signal) (int, error) {
	pids := e.RuntimePIDs()
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil {
			return 0, fmt.Errorf("kill function process %d: %w", pid, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for pidAlive(pid) {
			if time.Now().After(deadline) {
				return len(pids), fmt.Errorf("function process %d still runs after signal %v", pid, sig)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return len(pids), nil
}

// Invoke posts payload to the emulator.
func (e *Emulator) Invoke(ctx context.Context, payload []byte) (*InvokeResult, error) {
	return Invoke(ctx, e.InvokeURL, payload)
}

// InvokeResult is the emulator's answer to one invocation.
type InvokeResult struct {
	// StatusCode is the HTTP status of the emulator's response: 200 for a
	// response or an error returned by the handler, 5xx when the function
	// process failed.
	StatusCode int
	// Body is the handler's response, or its error as
	// {"errorMessage": ..., "errorType": ...}.
	Body []byte
}

// FunctionError returns the error type and message when the body is a
// function error rather than a response.
func (r *InvokeResult) FunctionError() (errorType, message string, ok bool) {
	var e struct {
		ErrorType    *string `json:"errorType"`
		ErrorMessage *string `json:"errorMessage"`
	}
	if json.Unmarshal(r.Body, &e) != nil || (e.ErrorType == nil && e.ErrorMessage == nil) {
		return "", "", false
	}
	if e.ErrorType != nil {
		errorType = *e.ErrorType
	}
	if e.ErrorMessage != nil {
		message = *e.ErrorMessage
	}
	return errorType, message, true
}

// TimedOut reports whether the function ran past its timeout (the emulator
// then answers with plain text, not JSON, and kills the function process).
func (r *InvokeResult) TimedOut() bool {
	return bytes.HasPrefix(r.Body, []byte("Task timed out"))
}

// Invoke posts payload to a Runtime Interface Emulator's invoke URL.
func Invoke(ctx context.Context, invokeURL string, payload []byte) (*InvokeResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, invokeURL, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("invoke %s: %w", invokeURL, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("invoke %s: %w", invokeURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("invoke %s: read response: %w", invokeURL, err)
	}
	return &InvokeResult{StatusCode: resp.StatusCode, Body: body}, nil
}
