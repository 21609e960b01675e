package devstack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/devstack"
)

// probe is a test function (testdata/probe) that reports its environment,
// writes to DynamoDB, fails or exits on request.
const probe = "./internal/testrig/devstack/testdata/probe"

type probeResponse struct {
	PID int               `json:"pid"`
	Env map[string]string `json:"env"`
}

func mustInvoke(tb testing.TB, em *devstack.Emulator, payload string) *devstack.InvokeResult {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := em.Invoke(ctx, []byte(payload))
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

func mustProbe(tb testing.TB, em *devstack.Emulator, payload string) probeResponse {
	tb.Helper()
	res := mustInvoke(tb, em, payload)
	var out probeResponse
	if res.StatusCode != 200 || json.Unmarshal(res.Body, &out) != nil || out.PID == 0 {
		tb.Fatalf("invoke %s: status %d, body %s", payload, res.StatusCode, res.Body)
	}
	return out
}

// TestEmulatorRunsFunctionWithStackEnvironment runs a real bootstrap under
// the emulator with the stack's environment and checks that the function
// sees exactly that environment and reaches moto through it.
func TestEmulatorRunsFunctionWithStackEnvironment(t *testing.T) {
	t.Parallel()
	srv := awstest.Moto(t)
	stack := awstest.NewStack(t, srv)
	em := awstest.Emulator(t, stack, awstest.BuildBootstrap(t, probe))

	out := mustProbe(t, em, `{"env":["IDENTITIES_TABLE","ATTRIBUTION_WINDOW","AWS_ENDPOINT_URL","AWS_LAMBDA_FUNCTION_TIMEOUT","AWS_LAMBDA_RUNTIME_API","HOME","PATH"]}`)
	want := stack.EnvMap()
	for _, k := range []string{"IDENTITIES_TABLE", "ATTRIBUTION_WINDOW", "AWS_ENDPOINT_URL"} {
		if out.Env[k] != want[k] || want[k] == "" {
			t.Errorf("function sees %s=%q, want %q", k, out.Env[k], want[k])
		}
	}
	if out.Env["AWS_LAMBDA_FUNCTION_TIMEOUT"] != "30" {
		t.Errorf("AWS_LAMBDA_FUNCTION_TIMEOUT = %q, want the template's 30", out.Env["AWS_LAMBDA_FUNCTION_TIMEOUT"])
	}
	if out.Env["AWS_LAMBDA_RUNTIME_API"] == "" {
		t.Error("AWS_LAMBDA_RUNTIME_API is not set by the emulator")
	}
	// The test binary's own environment (PATH at least) must not leak in.
	for _, k := range []string{"HOME", "PATH"} {
		if v, ok := out.Env[k]; ok {
			t.Errorf("the caller's %s=%q leaked into the function", k, v)
		}
	}

	// The function's SDK, configured only by that environment, writes to
	// the stack's table on moto.
	table := stack.TableName(devstack.IdentitiesTableID)
	mustProbe(t, em, fmt.Sprintf(`{"put_table":%q,"put_key":"att-probe"}`, table))
	got, err := dynamodb.NewFromConfig(srv.Config()).GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String(table),
		Key:       map[string]ddbtypes.AttributeValue{"attacker_uuid": &ddbtypes.AttributeValueMemberS{Value: "att-probe"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Item == nil {
		t.Fatal("the item the function wrote is not in the table")
	}
	if pid := got.Item["pid"].(*ddbtypes.AttributeValueMemberN).Value; pid != fmt.Sprint(out.PID) {
		t.Errorf("item written by pid %s, want the function process %d", pid, out.PID)
	}
}

// TestEmulatorFunctionFailures covers what crash tests rely on: a returned
// error, a process that exits mid-invocation, a process killed from outside,
// and a fresh process afterwards.
func TestEmulatorFunctionFailures(t *testing.T) {
	t.Parallel()
	em := awstest.EmulatorWithEnv(t, []string{"AWS_LAMBDA_FUNCTION_TIMEOUT=2"}, awstest.BuildBootstrap(t, probe))

	first := mustProbe(t, em, `{}`)
	if pids := em.RuntimePIDs(); len(pids) != 1 || pids[0] != first.PID {
		t.Errorf("RuntimePIDs = %v, want [%d]", pids, first.PID)
	}

	res := mustInvoke(t, em, `{"fail":"boom"}`)
	if typ, msg, ok := res.FunctionError(); res.StatusCode != 200 || !ok || msg != "boom" || typ == "" {
		t.Errorf("returned error: status %d, FunctionError = %q %q %v; body %s", res.StatusCode, typ, msg, ok, res.Body)
	}
	if again := mustProbe(t, em, `{}`); again.PID != first.PID {
		t.Errorf("a returned error restarted the function (pid %d → %d)", first.PID, again.PID)
	}

	res = mustInvoke(t, em, `{"exit":3}`)
	if typ, _, ok := res.FunctionError(); res.StatusCode != 502 || !ok || typ != "Runtime.ExitError" {
		t.Errorf("exit mid-invocation: status %d, body %s; want 502 Runtime.ExitError", res.StatusCode, res.Body)
	}
	second := mustProbe(t, em, `{}`)
	if second.PID == first.PID {
		t.Error("the function was not restarted after it exited")
	}

	n, err := em.KillRuntime(syscall.SIGKILL)
	if err != nil || n != 1 {
		t.Fatalf("KillRuntime = %d, %v; want 1 process", n, err)
	}
	res = mustInvoke(t, em, `{}`)
	if typ, msg, ok := res.FunctionError(); res.StatusCode != 502 || !ok || typ != "Runtime.ExitError" || !strings.Contains(msg, "signal: killed") {
		t.Errorf("first invocation after the kill: status %d, body %s; want 502 Runtime.ExitError (signal: killed)", res.StatusCode, res.Body)
	}
	third := mustProbe(t, em, `{}`)
	if third.PID == second.PID {
		t.Error("the function was not restarted after it was killed")
	}

	// Killed in the middle of an invocation: that invocation fails, the
	// next one gets a fresh process.
	done := make(chan *devstack.InvokeResult)
	go func() {
		res, err := em.Invoke(context.Background(), []byte(`{"sleep_ms":1500}`))
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	time.Sleep(500 * time.Millisecond)
	if n, err := em.KillRuntime(syscall.SIGKILL); err != nil || n != 1 {
		t.Fatalf("KillRuntime mid-invocation = %d, %v", n, err)
	}
	if res := <-done; res == nil || res.StatusCode != 502 {
		t.Errorf("invocation whose process was killed: %+v, want status 502", res)
	}
	if fourth := mustProbe(t, em, `{}`); fourth.PID == third.PID {
		t.Error("the function was not restarted after it was killed mid-invocation")
	}

	if res := mustInvoke(t, em, `{"sleep_ms":4000}`); !res.TimedOut() {
		t.Errorf("an invocation past AWS_LAMBDA_FUNCTION_TIMEOUT=2: status %d body %s, want a timeout", res.StatusCode, res.Body)
	}

	pids := em.RuntimePIDs()
	if err := em.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	for _, pid := range append(pids, em.Process.PID()) {
		if syscall.Kill(pid, 0) == nil {
			if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(stat), ") Z ") {
				t.Errorf("process %d still runs after Stop", pid)
			}
		}
	}
}

func TestStartEmulatorErrors(t *testing.T) {
	t.Parallel()
	rie := awstest.RIE(t)
	dir := t.TempDir()
	notExec := filepath.Join(dir, "bootstrap")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts devstack.EmulatorOptions
		want string
	}{
		{"missing emulator", devstack.EmulatorOptions{RIE: filepath.Join(dir, "nope"), Bootstrap: "/bin/true"}, "make tools"},
		{"missing bootstrap", devstack.EmulatorOptions{RIE: rie, Bootstrap: filepath.Join(dir, "nope")}, "not an executable file"},
		{"bootstrap not executable", devstack.EmulatorOptions{RIE: rie, Bootstrap: notExec}, "not an executable file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			em, err := devstack.StartEmulator(tt.opts)
			if err == nil {
				_ = em.Stop()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestRIEVersionMatchesMakefile keeps the two pins of the emulator equal.
func TestRIEVersionMatchesMakefile(t *testing.T) {
	t.Parallel()
	mk, err := os.ReadFile(filepath.Join(awstest.RepoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	module, version, _ := strings.Cut(devstack.RIEModule, "@")
	for _, want := range []string{"RIE_VERSION   := " + version, "RIE_MODULE    := " + module} {
		if !strings.Contains(string(mk), want) {
			t.Errorf("Makefile does not pin %q (devstack.RIEModule is %s)", want, devstack.RIEModule)
		}
	}
}

func TestStartMotoErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	noMoto := filepath.Join(dir, "python-without-moto")
	script := "#!/bin/sh\nexec python3 -c 'import moto_is_not_installed_here'\n"
	if err := os.WriteFile(noMoto, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		python string
		want   string
	}{
		{"no python", filepath.Join(dir, "no-such-python"), "not on PATH"},
		{"no moto", noMoto, "moto is not installed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := devstack.StartMoto(devstack.MotoOptions{Python: tt.python, StartTimeout: 10 * time.Second})
			if err == nil {
				_ = m.Stop()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestStopPIDLeavesOtherProcessesAlone(t *testing.T) {
	t.Parallel()
	p, err := devstack.StartProcess(devstack.ProcessOptions{Name: "sleeper", Path: "/bin/sleep", Args: []string{"30"}, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(time.Second) })

	found, err := devstack.StopPID(p.PID(), "aws-lambda-rie", time.Second)
	if found || err != nil {
		t.Fatalf("StopPID with another command line = %v, %v; want it left alone", found, err)
	}
	select {
	case <-p.Done():
		t.Fatal("a process whose command line does not match was stopped")
	case <-time.After(100 * time.Millisecond):
	}
	found, err = devstack.StopPID(p.PID(), "sleep 30", time.Second)
	if !found || err != nil {
		t.Fatalf("StopPID = %v, %v", found, err)
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("StopPID did not stop the process")
	}
}
