package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"decnet-attribution/internal/operator"
)

const sendDescription = `Reads observation messages as JSON Lines, in order, from FILE or standard
input: each line is a message body the function accepts (a BEHAVE envelope
with attacker_uuid, or one wrapped in an EventBridge event's "detail" or an
SNS notification's "Message"; see schemas/observation-message.schema.json).
Checks every line as the function will and sends the valid ones to the
observation queue, in line order, with SendMessageBatch: at most 10 messages
and 256 KB per call.

A bad line (not JSON, a missing or malformed field, a value that does not fit
the primitive's kind) is reported on standard error with its line number,
field and reason, and is not sent. Entries the queue fails on its side are
sent again with backoff (--max-attempts calls in all); those it rejects as
the sender's fault, and those still failing, are reported with line number
and reason. A call that fails as a whole ends the command.

On a terminal a progress bar shows on standard error; a summary line
follows. The exit status is 0 when every line was sent, 1 when some line was
bad or not sent, 2 for a usage mistake.

`

func runSend(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("send", "send [flags] [FILE]", sendDescription+awsHelp(observationQueue), stdout)
	registryPath := fs.String("registry", "", `JSON file {"primitive": "categorical|numeric|hash"} overriding the built-in primitive kinds (default: $ATTRIBUTION_REGISTRY)`)
	attempts := fs.Int("max-attempts", operator.DefaultSendAttempts, "calls made for an entry the queue fails on its side")
	awsf := addAWSFlags(fs, observationQueue)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(stderr, "attribution send: at most one FILE")
		return errUsage
	}
	if *attempts < 1 {
		fmt.Fprintln(stderr, "attribution send: --max-attempts must be at least 1")
		return errUsage
	}
	reg, err := registryFrom(*registryPath, os.LookupEnv)
	if err != nil {
		return err
	}
	in, size := stdin, int64(0)
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil {
			size = fi.Size()
		}
		in = f
	}
	setup, err := awsf.resolve(ctx, os.LookupEnv, observationQueue)
	if err != nil {
		return err
	}
	queueURL := setup.name(observationQueue)
	s := &operator.Sender{
		Client:      sqs.NewFromConfig(setup.cfg),
		QueueURL:    queueURL,
		Registry:    reg,
		MaxAttempts: *attempts,
	}
	var bar *operator.Bar
	var last operator.SendProgress
	if stderrIsTerminal(stderr) {
		bar = operator.NewBar(stderr, "sending", size)
		s.Progress = func(p operator.SendProgress) { last = p; bar.Set(p.BytesRead, sendDetail(p)) }
	}
	res, sendErr := s.Send(ctx, in)
	if bar != nil {
		bar.Finish(last.BytesRead, sendDetail(operator.SendProgress{Lines: res.Lines, Sent: res.Sent, Bad: len(res.Bad), Unsent: len(res.Unsent)}))
	}
	for _, p := range res.Bad {
		fmt.Fprintf(stderr, "line %d: %s\n", p.Line, p.Reason)
	}
	for _, p := range res.Unsent {
		fmt.Fprintf(stderr, "line %d: not sent: %s\n", p.Line, p.Reason)
	}
	fmt.Fprintf(stderr, "sent %d of %d lines to %s; %d bad, %d not sent\n", res.Sent, res.Lines, queueURL, len(res.Bad), len(res.Unsent))
	if sendErr != nil {
		return fmt.Errorf("stopped after line %d: %w", res.Lines, sendErr)
	}
	if !res.Complete() {
		return fmt.Errorf("%d of %d lines were not sent (see above)", res.Lines-res.Sent, res.Lines)
	}
	return nil
}

func sendDetail(p operator.SendProgress) string {
	return fmt.Sprintf("%d lines, %d sent, %d bad, %d not sent", p.Lines, p.Sent, p.Bad, p.Unsent)
}
