package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/devstack"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// mustLocalstack builds this command into a temporary directory.
func mustLocalstack(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "localstack")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		tb.Fatalf("build localstack: %v\n%s", err, out)
	}
	return bin
}

// mustWorkspace makes a repository-like root holding the template (and the
// event fixtures, if withEvents).
func mustWorkspace(tb testing.TB, withEvents bool) string {
	tb.Helper()
	repo := awstest.RepoRoot(tb)
	root := tb.TempDir()
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	copyFile(filepath.Join(repo, "template.yaml"), filepath.Join(root, "template.yaml"))
	if withEvents {
		files, err := filepath.Glob(filepath.Join(repo, "events", "*.json"))
		if err != nil || len(files) == 0 {
			tb.Fatalf("no event fixtures in the repository (%v)", err)
		}
		for _, f := range files {
			copyFile(f, filepath.Join(root, "events", filepath.Base(f)))
		}
	}
	return root
}

type result struct {
	stdout, stderr string
	err            error
}

func runLocalstack(tb testing.TB, bin, rie string, args ...string) result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "AWS_LAMBDA_RIE="+rie, "AWS_ENDPOINT_URL=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return result{stdout.String(), stderr.String(), err}
}

func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err == nil && !strings.Contains(string(stat), ") Z ")
}

// TestUpInvokeDown runs the command as a developer would: the stack must
// outlive `up`, answer `invoke`, and be gone after `down`.
func TestUpInvokeDown(t *testing.T) {
	t.Parallel()
	bin, rie := mustLocalstack(t), awstest.RIE(t)
	probe := awstest.BuildBootstrap(t, "./internal/testrig/devstack/testdata/probe")
	root := mustWorkspace(t, false)
	local := filepath.Join(root, ".local")
	t.Cleanup(func() { runLocalstack(t, bin, rie, "-root", root, "down") }) // if the test stops early

	up := runLocalstack(t, bin, rie, "-root", root, "up", "-bootstrap", probe, "-stack", "lsup", "-param", "AttributionWindow=9")
	if up.err != nil {
		t.Fatalf("up: %v\n%s%s", up.err, up.stdout, up.stderr)
	}
	b, err := os.ReadFile(filepath.Join(local, "stack.env"))
	if err != nil {
		t.Fatal(err)
	}
	env := devstack.ParseEnv(strings.Split(string(b), "\n"))
	for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_REGION", "IDENTITIES_TABLE", "OBSERVATIONS_TABLE", "STATES_TABLE",
		"OBSERVATION_QUEUE_URL", "DLQ_URL", "ALERTS_QUEUE_URL", "EVENT_BUS_NAME", "LAMBDA_INVOKE_URL"} {
		if env[k] == "" {
			t.Errorf("stack.env lacks %s", k)
		}
	}
	if env["STATES_TABLE"] != "lsup-StatesTable" || env["ATTRIBUTION_WINDOW"] != "9" {
		t.Errorf("stack.env STATES_TABLE=%q ATTRIBUTION_WINDOW=%q; want the -stack name and the -param override", env["STATES_TABLE"], env["ATTRIBUTION_WINDOW"])
	}

	// sam local invoke --env-vars: the function's environment, pointed at the stack.
	b, err = os.ReadFile(filepath.Join(local, "sam-env.json"))
	if err != nil {
		t.Fatal(err)
	}
	var samEnv map[string]map[string]string
	if err := json.Unmarshal(b, &samEnv); err != nil {
		t.Fatalf("sam-env.json: %v", err)
	}
	fn := samEnv["AttributionFunction"]
	if fn["STATES_TABLE"] != "lsup-StatesTable" || fn["AWS_ENDPOINT_URL"] != env["AWS_ENDPOINT_URL"] || fn["ATTRIBUTION_WINDOW"] != "9" {
		t.Errorf("sam-env.json = %v", samEnv)
	}
	// SAM drops variables the template does not declare, and the file must
	// never hold credentials.
	tmpl, err := devstack.LoadTemplate(filepath.Join(root, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	declared := tmpl.Resources[devstack.AttributionFunctionID].Properties["Environment"].(map[string]any)["Variables"].(map[string]any)
	for k := range fn {
		if _, ok := declared[k]; !ok {
			t.Errorf("sam-env.json sets %s, which the template does not declare: sam local invoke would drop it", k)
		}
		if strings.Contains(k, "SECRET") || strings.Contains(k, "ACCESS_KEY") || strings.Contains(k, "TOKEN") {
			t.Errorf("sam-env.json holds credentials (%s)", k)
		}
	}

	var pids []int
	for _, f := range []string{"moto.pid", "rie.pid", "esm.pid"} {
		b, err := os.ReadFile(filepath.Join(local, f))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if !alive(pid) {
			t.Fatalf("%s: process %d does not outlive `up`", f, pid)
		}
		pids = append(pids, pid)
	}
	if again := runLocalstack(t, bin, rie, "-root", root, "up", "-bootstrap", probe); again.err == nil || !strings.Contains(again.stderr, "already up") {
		t.Errorf("a second up: %v %s; want it refused", again.err, again.stderr)
	}

	payload := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(payload, []byte(`{"env":["STATES_TABLE","AWS_ENDPOINT_URL"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	inv := runLocalstack(t, bin, rie, "-root", root, "invoke", payload)
	if inv.err != nil {
		t.Fatalf("invoke: %v\n%s%s", inv.err, inv.stdout, inv.stderr)
	}
	for _, want := range []string{`"STATES_TABLE": "lsup-StatesTable"`, `"AWS_ENDPOINT_URL": "` + env["AWS_ENDPOINT_URL"] + `"`} {
		if !strings.Contains(inv.stdout, want) {
			t.Errorf("invoke output lacks %s:\n%s", want, inv.stdout)
		}
	}
	if err := os.WriteFile(payload, []byte(`{"fail":"boom"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if failed := runLocalstack(t, bin, rie, "-root", root, "invoke", payload); failed.err == nil || !strings.Contains(failed.stdout, "boom") {
		t.Errorf("invoke of a failing function: %v, output %s; want the error shown and a failure status", failed.err, failed.stdout)
	}

	down := runLocalstack(t, bin, rie, "-root", root, "down")
	if down.err != nil {
		t.Fatalf("down: %v\n%s%s", down.err, down.stdout, down.stderr)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(pid) {
			t.Errorf("process %d still runs after down", pid)
		}
	}
	for _, f := range []string{"stack.env", "sam-env.json", "moto.pid", "rie.pid", "esm.pid"} {
		if _, err := os.Stat(filepath.Join(local, f)); !os.IsNotExist(err) {
			t.Errorf("%s left behind after down (%v)", f, err)
		}
	}
	if inv := runLocalstack(t, bin, rie, "-root", root, "invoke", payload); inv.err == nil || !strings.Contains(inv.stderr, "no local stack is up") {
		t.Errorf("invoke after down: %v %s", inv.err, inv.stderr)
	}
}

// TestRunWithFunction is the whole local round trip with the real function:
// every fixture invoked, invalid ones dead-lettered with their reason,
// states and alerts printed, nothing left running.
func TestRunWithFunction(t *testing.T) {
	t.Parallel()
	bin, rie := mustLocalstack(t), awstest.RIE(t)
	bootstrap := awstest.BuildBootstrap(t, "./functions/attribution")
	root := mustWorkspace(t, true)

	res := runLocalstack(t, bin, rie, "-root", root, "run", "-bootstrap", bootstrap)
	if res.err != nil {
		t.Fatalf("run: %v\n%s%s", res.err, res.stdout, res.stderr)
	}
	out := res.stdout
	fixtures, _ := filepath.Glob(filepath.Join(root, "events", "*.json"))
	for _, f := range fixtures {
		if !strings.Contains(out, "-- events/"+filepath.Base(f)+" ") {
			t.Errorf("fixture %s was not invoked", filepath.Base(f))
		}
	}
	if !strings.Contains(out, "== invoking "+strconv.Itoa(len(fixtures))+" event fixtures") {
		t.Errorf("run did not announce all %d fixtures", len(fixtures))
	}
	if i, j := strings.Index(out, "sqs-single-observation"), strings.Index(out, "sqs-redelivery"); i < 0 || j < i {
		t.Error("the redelivery was invoked before the delivery it repeats")
	}
	for _, want := range []string{
		"dead-lettered 50f69104-7c6b-4d86-9691-8d5ee2d2a593 (field body)", // malformed-body-not-json
		"== states (",
		"att-3b9d  motor.input_modality",
		"== alerts delivered by the EventBridge rule",
		"state_changed",
		// The DECNET path: bus → bridge → queue → function → back onto the bus.
		"publishing 300 observations of 8 attackers",
		"bridge: received 300, spooled 300, sent 300 to the observation queue, failed 0, spool depth 0",
		"function: {Batches:",
		"back on DECNET's bus (heard by a dashboard subscriber): ",
		"  attribution.profile.state_changed ",
		"stopping the local stack",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("run output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("run output:\n%s\n%s", out, res.stderr)
	}
	if b, err := exec.Command("pgrep", "-f", bootstrap).Output(); err == nil && len(bytes.TrimSpace(b)) > 0 {
		t.Errorf("function processes still run after run: %s", b)
	}
}

// TestUpProcessesQueue: after up, a message sent to the observation queue
// is processed, as the event source mapping does in AWS, and down stops
// the mapping with the rest.
func TestUpProcessesQueue(t *testing.T) {
	t.Parallel()
	bin, rie := mustLocalstack(t), awstest.RIE(t)
	bootstrap := awstest.BuildBootstrap(t, "./functions/attribution")
	root := mustWorkspace(t, false)
	t.Cleanup(func() { runLocalstack(t, bin, rie, "-root", root, "down") })
	up := runLocalstack(t, bin, rie, "-root", root, "up", "-bootstrap", bootstrap, "-stack", "lsesm")
	if up.err != nil {
		t.Fatalf("up: %v\n%s%s", up.err, up.stdout, up.stderr)
	}
	if !strings.Contains(up.stdout, "event source mapping ObservationQueue → function (batch size 10") {
		t.Errorf("up does not announce the mapping with the template's batch size:\n%s", up.stdout)
	}
	b, err := os.ReadFile(filepath.Join(root, ".local", "stack.env"))
	if err != nil {
		t.Fatal(err)
	}
	env := devstack.ParseEnv(strings.Split(string(b), "\n"))
	cfg := devstack.AWSConfig(env["AWS_ENDPOINT_URL"], env["AWS_REGION"])
	body := `{"attacker_uuid":"att-esm","primitive":"motor.input_modality","evidence_ref":"r1","ts":1764000000,"value":"typed"}`
	if _, err := sqs.NewFromConfig(cfg).SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(env["OBSERVATION_QUEUE_URL"]), MessageBody: aws.String(body)}); err != nil {
		t.Fatal(err)
	}
	db := dynamodb.NewFromConfig(cfg)
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := db.GetItem(context.Background(), &dynamodb.GetItemInput{
			TableName: aws.String(env["IDENTITIES_TABLE"]),
			Key:       map[string]ddbtypes.AttributeValue{"attacker_uuid": &ddbtypes.AttributeValueMemberS{Value: "att-esm"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Item) > 0 {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(root, ".local", "logs", "esm.log"))
			t.Fatalf("the message sent to the queue was not processed within 60s; esm.log:\n%s", log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	pidText, err := os.ReadFile(filepath.Join(root, ".local", "esm.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if down := runLocalstack(t, bin, rie, "-root", root, "down"); down.err != nil || !strings.Contains(down.stdout, "esm -queue-url") {
		t.Fatalf("down: %v\n%s%s", down.err, down.stdout, down.stderr)
	}
	for end := time.Now().Add(5 * time.Second); alive(pid) && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("the mapping (pid %d) still runs after down", pid)
	}
}
