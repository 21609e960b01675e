package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/devstack"
)

// changeLine is one line of rebuild's report.
var changeLine = regexp.MustCompile(`^(\S+)\|(\S+): (\S+) → (\S+), count (\d+) → (\d+)$`)

// parseChanges reads rebuild's report into "identity|primitive old new"
// entries, sorted.
func parseChanges(tb testing.TB, stdout string) []string {
	tb.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if l == "" {
			continue
		}
		m := changeLine.FindStringSubmatch(l)
		if m == nil {
			tb.Fatalf("report line %q", l)
		}
		out = append(out, m[1]+"|"+m[2]+" "+m[3]+" "+m[4])
	}
	slices.Sort(out)
	return out
}

// mustBusTap routes every event of the stack's bus to a new queue.
func mustBusTap(tb testing.TB, srv *awstest.Server, stack *devstack.Stack) string {
	tb.Helper()
	ctx := context.Background()
	sq, eb := sqs.NewFromConfig(srv.Config()), eventbridge.NewFromConfig(srv.Config())
	name := devstack.UniqueName("tap-")
	q, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		tb.Fatal(err)
	}
	attrs, err := sq.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		tb.Fatal(err)
	}
	bus := stack.BusName(devstack.AttributionBusID)
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(name), EventBusName: aws.String(bus),
		EventPattern: aws.String(`{"source":["decnet.attribution"]}`)}); err != nil {
		tb.Fatal(err)
	}
	if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(name), EventBusName: aws.String(bus),
		Targets: []ebtypes.Target{{Id: aws.String("tap"), Arn: aws.String(attrs.Attributes["QueueArn"])}}}); err != nil {
		tb.Fatal(err)
	}
	return aws.ToString(q.QueueUrl)
}

func TestRebuildCommand(t *testing.T) {
	srv, stack := mustStack(t)
	stream := cliStream()
	t.Setenv("OBSERVATION_QUEUE_URL", stack.QueueURL(devstack.ObservationQueueID))
	if res := runCLI(t, strings.Join(stream, "\n"), "send"); res.code != 0 {
		t.Fatalf("send: %+v", res)
	}
	mustDeliver(t, srv, stack)
	tap := mustBusTap(t, srv, stack)

	// What replay predicts: the states before and after the change.
	before := replayStateLines(t, stream)
	t.Setenv("ATTRIBUTION_CATEGORICAL_MAJORITY", "3")
	after := replayStateLines(t, stream)
	var predicted, transitions []string
	for k, a := range after {
		b := before[k]
		if a["state"] != b["state"] || fmt.Sprint(a["current_value"]) != fmt.Sprint(b["current_value"]) ||
			a["confidence"] != b["confidence"] || a["observation_count"] != b["observation_count"] {
			attacker, prim, _ := strings.Cut(k, "|")
			entry := attribution.StubIdentityID(attacker) + "|" + prim + " " + b["state"].(string) + " " + a["state"].(string)
			predicted = append(predicted, entry)
			if a["state"] != b["state"] {
				transitions = append(transitions, entry)
			}
		}
	}
	slices.Sort(predicted)
	slices.Sort(transitions)
	if len(transitions) == 0 || len(predicted) == len(after) {
		t.Fatalf("the change affects %v of %d series: the test does not discriminate", predicted, len(after))
	}

	env := stack.EnvMap()
	for _, k := range []string{"IDENTITIES_TABLE", "OBSERVATIONS_TABLE", "STATES_TABLE", "EVENT_BUS_NAME"} {
		t.Setenv(k, env[k])
	}
	checkpoint := filepath.Join(t.TempDir(), "rebuild.json")

	// Dry run: exactly the predicted changes, and nothing written.
	dry := runCLI(t, "", "rebuild", "--dry-run", "--checkpoint", checkpoint)
	if dry.code != 0 || !slices.Equal(parseChanges(t, dry.stdout), predicted) {
		t.Fatalf("dry run: %+v\nwant %v", dry, predicted)
	}
	if !strings.Contains(dry.stderr, fmt.Sprintf("dry run: %d series examined, %d would change (%d state words), 0 failed; nothing was written", len(after), len(predicted), len(transitions))) {
		t.Errorf("dry run summary: %s", dry.stderr)
	}
	if _, err := os.Stat(checkpoint); !os.IsNotExist(err) {
		t.Errorf("the dry run wrote its checkpoint")
	}
	if again := runCLI(t, "", "rebuild", "--dry-run", "--segments", "3"); again.stdout != dry.stdout && !slices.Equal(parseChanges(t, again.stdout), predicted) {
		t.Errorf("a second dry run reports %s", again.stdout)
	}

	// What the function's last commits left unacknowledged (the bus took
	// it; the series' next commit would say so): the rebuild publishes it
	// again, same IDs, and it is not the rebuild's.
	owed := pendingEventIDs(t, srv.Config(), env, "att-0", "att-1")
	republished := 0

	// The rebuild, publishing its transitions.
	res := runCLI(t, "", "rebuild", "--emit", "--segments", "2", "--checkpoint", checkpoint)
	if res.code != 0 || !slices.Equal(parseChanges(t, res.stdout), predicted) {
		t.Fatalf("rebuild --emit: %+v", res)
	}
	// The bus gets exactly the transitions, and a multi_actor_suspected
	// event whenever an identity's flagged set changed to two or more.
	var published []string
	lastSuspicion := map[string]attribution.MultiActorSuspected{}
	suspicions := 0
	for _, body := range drainBodies(t, srv.Config(), tap) {
		var ev struct {
			DetailType string          `json:"detail-type"`
			Detail     json.RawMessage `json:"detail"`
		}
		if err := json.Unmarshal([]byte(body), &ev); err != nil {
			t.Fatalf("event %s: %v", body, err)
		}
		var id struct {
			EventID string `json:"event_id"`
		}
		if json.Unmarshal(ev.Detail, &id) == nil && owed[id.EventID] {
			republished++
			continue
		}
		switch ev.DetailType {
		case attribution.EventStateChanged:
			var d attribution.StateChanged
			if err := json.Unmarshal(ev.Detail, &d); err != nil || d.OldState == nil {
				t.Fatalf("detail %s (%v)", ev.Detail, err)
			}
			published = append(published, d.IdentityUUID+"|"+d.Primitive+" "+*d.OldState+" "+d.NewState)
		case attribution.EventMultiActorSuspected:
			var d attribution.MultiActorSuspected
			if err := json.Unmarshal(ev.Detail, &d); err != nil {
				t.Fatalf("detail %s (%v)", ev.Detail, err)
			}
			suspicions++
			if d.Sequence > lastSuspicion[d.IdentityUUID].Sequence {
				lastSuspicion[d.IdentityUUID] = d
			}
		default:
			t.Fatalf("event %s", body)
		}
	}
	slices.Sort(published)
	if !slices.Equal(published, transitions) {
		t.Fatalf("bus got %v, want the transitions %v", published, transitions)
	}
	for _, attacker := range []string{"att-0", "att-1"} {
		var flagged []string
		for _, p := range []string{"environmental.locale", "motor.input_modality", "temporal.active_hours", "toolchain.c2.beacon_interval_ms", "toolchain.ssh.hassh_client"} {
			if after[attacker+"|"+p]["state"] == attribution.StateMultiActor {
				flagged = append(flagged, p)
			}
		}
		last, ok := lastSuspicion[attribution.StubIdentityID(attacker)]
		if ok && (len(flagged) < 2 || !slices.Equal(last.Primitives, flagged)) {
			t.Errorf("%s: last suspicion names %v, the rebuilt states flag %v", attacker, last.Primitives, flagged)
		}
	}
	if !strings.Contains(res.stderr, fmt.Sprintf("%d transitions, 0 failed; %d events published", len(transitions), len(transitions)+suspicions+republished)) {
		t.Errorf("summary: %s", res.stderr)
	}

	// The states table now holds what replay with the new threshold ends with.
	t.Setenv("IDENTITIES_TABLE", env["IDENTITIES_TABLE"])
	for _, attacker := range []string{"att-0", "att-1"} {
		st := runCLI(t, "", "state", "--attacker", attacker, "--json")
		if st.code != 0 {
			t.Fatalf("state: %+v", st)
		}
		for _, l := range jsonLines(t, st.stdout) {
			if l["type"] != "state" {
				continue
			}
			w := after[attacker+"|"+l["primitive"].(string)]
			if l["state"] != w["state"] || l["observation_count"] != w["observation_count"] ||
				fmt.Sprint(l["current_value"]) != fmt.Sprint(w["current_value"]) || math.Abs(l["confidence"].(float64)-w["confidence"].(float64)) > 1e-9 {
				t.Errorf("%s %s: table %v, replay %v", attacker, l["primitive"], l, w)
			}
			if l["pending_events"] != 0.0 {
				t.Errorf("%s %s: events left in the outbox", attacker, l["primitive"])
			}
		}
	}

	// Again: nothing changes and nothing is published.
	res = runCLI(t, "", "rebuild", "--checkpoint", checkpoint)
	if res.code != 0 || res.stdout != "" || !strings.Contains(res.stderr, "0 changed, 0 transitions, 0 failed; no events published (no --emit)") {
		t.Fatalf("second rebuild: %+v", res)
	}
	if got := drainBodies(t, srv.Config(), tap); len(got) != 0 {
		t.Fatalf("the second rebuild published %d events", len(got))
	}

	// A registry under which stored values no longer fit: those series fail
	// and wait in the checkpoint for the next run.
	t.Setenv("ATTRIBUTION_REGISTRY", `{"environmental.locale":"numeric"}`)
	res = runCLI(t, "", "rebuild", "--checkpoint", checkpoint)
	if res.code != 1 || !strings.Contains(res.stderr, "|environmental.locale: rebuild: stored observation") ||
		!strings.Contains(res.stderr, "2 series could not be rebuilt (see above); "+checkpoint+" keeps them for the next run") {
		t.Fatalf("rebuild with failures: %+v", res)
	}
	res = runCLI(t, "", "rebuild", "--checkpoint", checkpoint)
	if res.code != 1 || !strings.HasPrefix(res.stderr, "resuming from "+checkpoint+"\n") || !strings.Contains(res.stderr, "8 series were done by an earlier run; rebuilt 0 series: 0 changed, 0 transitions, 2 failed") {
		t.Fatalf("rerun: %+v", res)
	}
}

func TestRebuildUsageErrors(t *testing.T) {
	isolateAWS(t)
	t.Setenv("AWS_REGION", "us-east-1")
	for name, c := range map[string]struct {
		args []string
		code int
		want string
	}{
		"dry run and emit": {[]string{"rebuild", "--dry-run", "--emit"}, 2, "drop --emit"},
		"no segments":      {[]string{"rebuild", "--segments", "0"}, 2, "--segments must be 1 to 64"},
		"arguments":        {[]string{"rebuild", "x"}, 2, "no arguments"},
		"no tables": {[]string{"rebuild"}, 1, "identities table: not set; pass --identities-table, set IDENTITIES_TABLE or --stack\n" +
			"observations table: not set; pass --observations-table, set OBSERVATIONS_TABLE or --stack\n" +
			"states table: not set; pass --states-table, set STATES_TABLE or --stack"},
		"emit without a bus": {[]string{"rebuild", "--emit", "--identities-table", "i", "--observations-table", "o", "--states-table", "s"}, 1, "event bus: not set; pass --event-bus, set EVENT_BUS_NAME or --stack"},
	} {
		t.Run(name, func(t *testing.T) {
			res := runCLI(t, "", c.args...)
			if res.code != c.code || !strings.Contains(res.stderr, c.want) {
				t.Fatalf("%+v, want exit %d and %q", res, c.code, c.want)
			}
		})
	}
	t.Setenv("ATTRIBUTION_WINDOW", "0")
	if res := runCLI(t, "", "rebuild", "--observations-table", "o", "--states-table", "s"); res.code != 1 || !strings.Contains(res.stderr, "window") {
		t.Fatalf("bad threshold: %+v", res)
	}
}

// pendingEventIDs lists the events the attackers' series records hold as
// not acknowledged.
func pendingEventIDs(t *testing.T, cfg aws.Config, env map[string]string, attackers ...string) map[string]bool {
	t.Helper()
	store := ddbstore.New(dynamodb.NewFromConfig(cfg), ddbstore.Tables{
		Identities: env["IDENTITIES_TABLE"], Observations: env["OBSERVATIONS_TABLE"], States: env["STATES_TABLE"],
	}, 0)
	out := make(map[string]bool)
	for _, a := range attackers {
		recs, err := store.LoadIdentitySeries(context.Background(), attribution.StubIdentityID(a))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			for _, e := range r.Pending() {
				out[e.ID] = true
			}
		}
	}
	return out
}
