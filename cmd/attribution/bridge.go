package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"decnet-attribution/internal/bridge"
	"decnet-attribution/internal/decnetbus"
)

var publishBackQueue = resource{
	"publish-back queue", "publish-back-queue-url", "PUBLISH_BACK_QUEUE_URL", "PublishBackQueueUrl",
	"URL of the queue the PublishBack rule fills with the service's events; enables publishing them on DECNET's bus"}

const bridgeDescription = `Runs beside DECNET: subscribes to attacker.observation.> (and each --forward
pattern) on DECNET's bus and forwards every event, as its bus envelope,
unchanged, to the observation queue (SendMessageBatch: at most 10 messages
and 256 KB per call, after a short linger).

Each event read from the bus is appended to the spool in --spool DIR and
synced to disk (in groups) before it counts as received; it leaves the
spool only when SQS acknowledged it. An event SQS refuses as malformed goes
to DIR/rejected.jsonl with its reason. On start the bridge first sends what
the spool holds, so an accepted event survives the queue being unreachable
for hours, a SIGKILL and a reboot. The spool holds at most --spool-max-bytes
of unsent events; then --when-full says what happens: refuse-new (new
events are not accepted; DECNET's database keeps them for a backfill) or
drop-oldest (the oldest unsent events are discarded). Either is logged and
counted.

The bus socket is --bus-socket, else $DECNET_BUS_SOCKET, else
/run/decnet/bus.sock when /run/decnet exists, else ~/.decnet/bus.sock. When
DECNET's bus restarts, the bridge reconnects with backoff and subscribes
again.

With a publish-back queue, the service's state_changed and
multi_actor_suspected events are published on the bus as
attribution.profile.state_changed and attribution.profile.multi_actor_suspected,
with the payload fields of DECNET's own attribution worker plus event_id and
sequence. An event_id is published once (the last --seen-ids ids are
remembered, also across restarts); a message is deleted from the queue only
after the bus took the event.

A summary line is logged every --summary-interval. SIGTERM or SIGINT stops
reading the bus, syncs the spool, sends what it holds for up to
--drain-timeout and exits 0; what is left is sent on the next start.

`

func runBridge(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("bridge", "bridge --spool DIR [--bus-socket PATH] [--queue-url URL] [--publish-back-queue-url URL] [--forward PATTERN]... [flags]",
		bridgeDescription+awsHelp(observationQueue, publishBackQueue), stdout)
	spoolDir := fs.String("spool", "", "directory of the on-disk spool (required; keep it on persistent storage)")
	busSocket := fs.String("bus-socket", "", "DECNET's bus socket (default: $DECNET_BUS_SOCKET, else /run/decnet/bus.sock, else ~/.decnet/bus.sock)")
	var forward patternsFlag
	fs.Var(&forward, "forward", "also forward events on this bus pattern (repeatable), e.g. 'identity.>'")
	maxBytes := fs.Int64("spool-max-bytes", bridge.DefaultSpoolMaxBytes, "most bytes of unsent events the spool holds")
	whenFull := fs.String("when-full", string(bridge.RefuseNew), "when the spool is full: refuse-new or drop-oldest")
	summaryEvery := fs.Duration("summary-interval", bridge.DefaultSummaryInterval, "how often the summary line is logged")
	drain := fs.Duration("drain-timeout", bridge.DefaultDrainTimeout, "on stop, how long to keep sending what the spool holds")
	linger := fs.Duration("linger", bridge.DefaultLinger, "how long a batch waits for more events before it is sent")
	seen := fs.Int("seen-ids", bridge.DefaultSeenIDs, "how many published event ids publish-back remembers")
	retryWait := fs.Duration("retry-wait", bridge.DefaultMinBackoff, "first wait before retrying the queue or reconnecting to the bus (doubling)")
	maxRetryWait := fs.Duration("max-retry-wait", bridge.DefaultMaxBackoff, "longest wait between retries of the queue and the bus")
	backWait := fs.Duration("publish-back-wait", 20*time.Second, "long-poll wait of each receive from the publish-back queue (1s to 20s)")
	name := fs.String("name", "", "client name sent to the bus with HELLO (default: decnet-attribution-bridge[PID])")
	awsf := addAWSFlags(fs, observationQueue, publishBackQueue)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "attribution bridge: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	case *spoolDir == "":
		fmt.Fprintln(stderr, "attribution bridge: --spool DIR is required")
		return errUsage
	case *whenFull != string(bridge.RefuseNew) && *whenFull != string(bridge.DropOldest):
		fmt.Fprintf(stderr, "attribution bridge: --when-full %q: want refuse-new or drop-oldest\n", *whenFull)
		return errUsage
	case *retryWait <= 0 || *maxRetryWait < *retryWait:
		fmt.Fprintln(stderr, "attribution bridge: want 0 < --retry-wait <= --max-retry-wait")
		return errUsage
	case *backWait < time.Second || *backWait > 20*time.Second:
		fmt.Fprintln(stderr, "attribution bridge: --publish-back-wait must be 1s to 20s")
		return errUsage
	case *maxBytes < 1<<20:
		fmt.Fprintln(stderr, "attribution bridge: --spool-max-bytes must be at least 1 MiB (one bus event)")
		return errUsage
	}
	home, _ := os.UserHomeDir()
	socket := decnetbus.SocketPath(*busSocket, os.LookupEnv, decnetbus.SystemRunDir, home)
	setup, err := awsf.resolve(ctx, os.LookupEnv, observationQueue)
	if err != nil {
		return err
	}
	client := sqs.NewFromConfig(setup.cfg)
	clientName := *name
	if clientName == "" {
		clientName = fmt.Sprintf("decnet-attribution-bridge[%d]", os.Getpid())
	}
	cfg := bridge.Config{
		SpoolDir:            *spoolDir,
		Spool:               bridge.SpoolOptions{MaxBytes: *maxBytes, WhenFull: bridge.FullPolicy(*whenFull)},
		BusSocket:           socket,
		ClientName:          clientName,
		Forward:             forward,
		QueueURL:            setup.name(observationQueue),
		SQS:                 client,
		PublishBackQueueURL: setup.name(publishBackQueue),
		PublishBackSQS:      client,
		SeenIDs:             *seen,
		Linger:              *linger,
		SummaryInterval:     *summaryEvery,
		DrainTimeout:        *drain,
		MinBackoff:          *retryWait,
		MaxBackoff:          *maxRetryWait,
		BusMinBackoff:       *retryWait,
		BusMaxBackoff:       *maxRetryWait,
		PublishBackWait:     *backWait,
		Logger:              slog.New(slog.NewTextHandler(stderr, nil)),
	}
	if *linger <= 0 {
		cfg.Linger = -1
	}
	b, err := bridge.New(cfg)
	if err != nil {
		return err
	}
	return b.Run(ctx)
}

// patternsFlag collects repeated --forward patterns.
type patternsFlag []string

func (p *patternsFlag) String() string { return strings.Join(*p, ",") }

func (p *patternsFlag) Set(s string) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("empty pattern")
	}
	*p = append(*p, s)
	return nil
}
