package awstest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"decnet-attribution/internal/testrig/devstack"
)

// Server is the moto server shared by the tests of one test binary.
type Server struct {
	// Endpoint is the server's URL, e.g. http://127.0.0.1:41234.
	Endpoint string
	moto     *devstack.Moto
}

// shared state of the test binary, released by Main.
var shared struct {
	motoOnce sync.Once
	server   *Server
	motoErr  error

	templateOnce sync.Once
	template     *devstack.Template
	templateErr  error

	mu        sync.Mutex
	binDir    string            // temporary directory of built bootstraps
	bootstrap map[string]string // package → built binary
	buildErr  map[string]error
}

// Main runs the tests of a package and then stops what this package started
// for them (the moto server, built binaries). Use it as the package's
// TestMain:
//
//	func TestMain(m *testing.M) { awstest.Main(m) }
//
// Without it the moto server still dies with the test binary (on Linux it
// gets SIGKILL when its parent exits), but built binaries stay in the
// temporary directory.
func Main(m *testing.M) {
	code := m.Run()
	if err := Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "awstest:", err)
	}
	os.Exit(code)
}

// Stop stops the shared moto server and removes built binaries. Main calls
// it; call it yourself from a TestMain that cannot use Main.
func Stop() error {
	var errs []error
	if shared.server != nil {
		errs = append(errs, shared.server.moto.Stop())
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.binDir != "" {
		errs = append(errs, os.RemoveAll(shared.binDir))
	}
	return errors.Join(errs...)
}

// Moto returns the moto server of this test binary, starting it on first
// use on a free loopback port. If python3 or moto is missing, or the server
// does not start, the test fails (it is never skipped): these tests exist
// to run against a real AWS API.
func Moto(tb testing.TB) *Server {
	tb.Helper()
	shared.motoOnce.Do(func() {
		m, err := devstack.StartMoto(devstack.MotoOptions{})
		if err != nil {
			shared.motoErr = err
			return
		}
		shared.server = &Server{Endpoint: m.Endpoint, moto: m}
	})
	if shared.motoErr != nil {
		tb.Fatalf("these tests need a moto server (python3 -m moto.server), and it could not start: %v", shared.motoErr)
	}
	select {
	case <-shared.server.moto.Process.Done():
		tb.Fatalf("the moto server died during the tests: %v; its output ends with:\n%s",
			shared.server.moto.Process.ExitErr(), shared.server.moto.Process.Output())
	default:
	}
	return shared.server
}

// Config returns an SDK configuration for the server: region us-east-1,
// static credentials test/test and the server as BaseEndpoint. It reads no
// environment or shared files.
func (s *Server) Config() aws.Config {
	return devstack.AWSConfig(s.Endpoint, devstack.DefaultRegion)
}

// StackOption customises NewStack.
type StackOption func(*devstack.Options)

// WithParameters overrides template parameters.
func WithParameters(params map[string]string) StackOption {
	return func(o *devstack.Options) {
		if o.Parameters == nil {
			o.Parameters = map[string]string{}
		}
		for k, v := range params {
			o.Parameters[k] = v
		}
	}
}

// NewStack provisions the repository's template.yaml into srv under a
// unique stack name, so its tables, queues, bus and rule are the test's
// own. The test fails if the template cannot be read or provisioned.
func NewStack(tb testing.TB, srv *Server, opts ...StackOption) *devstack.Stack {
	tb.Helper()
	return NewStackFrom(tb, srv, Template(tb), opts...)
}

// NewStackFrom is NewStack with another template.
func NewStackFrom(tb testing.TB, srv *Server, tmpl *devstack.Template, opts ...StackOption) *devstack.Stack {
	tb.Helper()
	o := devstack.Options{StackName: devstack.UniqueName("t"), Endpoint: srv.Endpoint}
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stack, err := devstack.Provision(ctx, devstack.NewClients(srv.Config()), tmpl, o)
	if err != nil {
		tb.Fatalf("provision stack %s: %v", o.StackName, err)
	}
	return stack
}

// RepoRoot returns the directory of the module's go.mod, found from the
// test's working directory upwards.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := devstack.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	return dir
}

// Template returns the repository's template.yaml, parsed once.
func Template(tb testing.TB) *devstack.Template {
	tb.Helper()
	shared.templateOnce.Do(func() {
		root, err := devstack.RepoRoot()
		if err != nil {
			shared.templateErr = err
			return
		}
		shared.template, shared.templateErr = devstack.LoadTemplate(filepath.Join(root, "template.yaml"))
	})
	if shared.templateErr != nil {
		tb.Fatal(shared.templateErr)
	}
	return shared.template
}

// RIE returns the path of the pinned Runtime Interface Emulator (see
// devstack.FindRIE: $AWS_LAMBDA_RIE or .local/bin/aws-lambda-rie, which
// `make test` installs). The test fails if it is missing.
func RIE(tb testing.TB) string {
	tb.Helper()
	path, err := devstack.FindRIE(RepoRoot(tb))
	if err != nil {
		tb.Fatalf("these tests need the Lambda Runtime Interface Emulator: %v", err)
	}
	return path
}

// BuildBootstrap builds the Lambda main package pkg (an import path or a
// path relative to the repository root, e.g. "./functions/attribution") for
// the host, with -tags lambda.norpc as in production, once per test binary,
// and returns the binary's path.
func BuildBootstrap(tb testing.TB, pkg string) string {
	tb.Helper()
	root := RepoRoot(tb)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.bootstrap == nil {
		shared.bootstrap, shared.buildErr = map[string]string{}, map[string]error{}
	}
	if path, ok := shared.bootstrap[pkg]; ok {
		return path
	}
	if err, ok := shared.buildErr[pkg]; ok {
		tb.Fatal(err)
	}
	path, err := buildBootstrap(root, pkg)
	if err != nil {
		shared.buildErr[pkg] = err
		tb.Fatal(err)
	}
	shared.bootstrap[pkg] = path
	return path
}

func buildBootstrap(root, pkg string) (string, error) {
	if shared.binDir == "" {
		dir, err := os.MkdirTemp("", "awstest-bin-")
		if err != nil {
			return "", fmt.Errorf("build %s: %w", pkg, err)
		}
		shared.binDir = dir
	}
	out := filepath.Join(shared.binDir, strings.NewReplacer("/", "_", ".", "_").Replace(pkg), "bootstrap")
	return out, devstack.BuildBootstrap(context.Background(), devstack.Build{Root: root, Package: pkg, Out: out})
}

// Emulator starts the Runtime Interface Emulator running bootstrap with the
// stack's Lambda environment (Stack.LambdaEnv) and stops it when the test
// ends. If the test failed, the emulator's and function's output is logged.
func Emulator(tb testing.TB, stack *devstack.Stack, bootstrap string) *devstack.Emulator {
	tb.Helper()
	return EmulatorWithEnv(tb, stack.LambdaEnv(), bootstrap)
}

// EmulatorWithEnv is Emulator with an explicit environment.
func EmulatorWithEnv(tb testing.TB, env []string, bootstrap string) *devstack.Emulator {
	tb.Helper()
	em, err := devstack.StartEmulator(devstack.EmulatorOptions{RIE: RIE(tb), Bootstrap: bootstrap, Env: env})
	if err != nil {
		tb.Fatalf("start the Runtime Interface Emulator: %v", err)
	}
	tb.Cleanup(func() {
		if err := em.Stop(); err != nil {
			tb.Errorf("stop emulator: %v", err)
		}
		if tb.Failed() {
			tb.Logf("emulator and function output:\n%s", em.Process.Output())
		}
	})
	return em
}
