package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"decnet-attribution/internal/testrig/devstack"
)

func TestSendCommand(t *testing.T) {
	srv, stack := mustStack(t)
	queue := stack.QueueURL(devstack.ObservationQueueID)
	var lines, valid []string
	for i := range 12 {
		line := fmt.Sprintf(`{"attacker_uuid":"att-1","primitive":"motor.input_modality","evidence_ref":"r%d","ts":%d,"value":"typed"}`, i, 100+i)
		lines, valid = append(lines, line), append(valid, line)
		if i == 4 {
			lines = append(lines, `{"attacker_uuid":"att-1","primitive":"motor","evidence_ref":"x","ts":1,"value":1}`) // line 6
		}
	}
	file := filepath.Join(t.TempDir(), "obs.jsonl")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The queue named by the function's variable, the endpoint by the SDK's.
	t.Setenv("OBSERVATION_QUEUE_URL", queue)
	res := runCLI(t, "", "send", file)
	if res.code != 1 {
		t.Fatalf("a bad line must fail the command: %+v", res)
	}
	if !strings.Contains(res.stderr, "line 6: primitive: \"motor\" is not a dotted name") ||
		!strings.Contains(res.stderr, "sent 12 of 13 lines to "+queue+"; 1 bad, 0 not sent") ||
		!strings.Contains(res.stderr, "attribution send: 1 of 13 lines were not sent") || res.stdout != "" {
		t.Fatalf("report: %+v", res)
	}
	got := drainBodies(t, srv.Config(), queue)
	slices.Sort(got)
	slices.Sort(valid)
	if !slices.Equal(got, valid) {
		t.Fatalf("queue holds %v, want the valid lines", got)
	}

	// From standard input, everything valid: exit 0.
	if res := runCLI(t, strings.Join(valid[:3], "\n"), "send", "-"); res.code != 0 || !strings.Contains(res.stderr, "sent 3 of 3 lines") {
		t.Fatalf("stdin: %+v", res)
	}
	if got := drainBodies(t, srv.Config(), queue); len(got) != 3 {
		t.Fatalf("queue holds %d messages, want 3", len(got))
	}

	// A queue that is not there.
	gone := queue + "-gone"
	res = runCLI(t, valid[0], "send", "--queue-url", gone)
	if res.code != 1 || !strings.Contains(res.stderr, "queue "+gone+" does not exist") || !strings.Contains(res.stderr, "line 1: not sent") {
		t.Fatalf("missing queue: %+v", res)
	}
}

func TestSendUsageErrors(t *testing.T) {
	isolateAWS(t)
	t.Setenv("AWS_REGION", "us-east-1")
	for name, c := range map[string]struct {
		args []string
		code int
		want string
	}{
		"two files":        {[]string{"send", "a", "b"}, 2, "at most one FILE"},
		"no attempts":      {[]string{"send", "--max-attempts", "0"}, 2, "--max-attempts"},
		"no queue":         {[]string{"send"}, 1, "observation queue: not set; pass --queue-url, set OBSERVATION_QUEUE_URL or --stack"},
		"missing file":     {[]string{"send", "--queue-url", "q", "/no/such/file"}, 1, "no such file"},
		"bad registry env": {[]string{"send", "--queue-url", "q"}, 1, "ATTRIBUTION_REGISTRY"},
	} {
		t.Run(name, func(t *testing.T) {
			if name == "bad registry env" {
				t.Setenv("ATTRIBUTION_REGISTRY", `{"a.b":"bogus"}`)
			}
			res := runCLI(t, "", c.args...)
			if res.code != c.code || !strings.Contains(res.stderr, c.want) {
				t.Fatalf("%+v, want exit %d and %q", res, c.code, c.want)
			}
		})
	}
}

func drainBodies(tb testing.TB, cfg aws.Config, queue string) []string {
	tb.Helper()
	client := sqs.NewFromConfig(cfg)
	var out []string
	for empty := 0; empty < 2; {
		got, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(queue), MaxNumberOfMessages: 10, VisibilityTimeout: 60})
		if err != nil {
			tb.Fatal(err)
		}
		if len(got.Messages) == 0 {
			empty++
			continue
		}
		empty = 0
		for _, m := range got.Messages {
			out = append(out, aws.ToString(m.Body))
			if _, err := client.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(queue), ReceiptHandle: m.ReceiptHandle}); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return out
}
