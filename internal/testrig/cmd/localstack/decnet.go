package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"decnet-attribution/internal/backoff"
	"decnet-attribution/internal/bridge"
	"decnet-attribution/internal/decnetbus"
	"decnet-attribution/internal/testrig/busrig"
	"decnet-attribution/internal/testrig/devstack"
)

// decnetObservations is the size of the stream run publishes on the bus.
const decnetObservations = 300

// runDecnetPath shows the path a DECNET operator's observations take: a
// DECNET-like publisher on a local bus, the bridge, the queue, the event
// source mapping, the function (DynamoDB, EventBridge), the alerts and the
// publish-back queue, and back onto the bus, where a subscriber stands in
// for DECNET's dashboard. It stops everything it started.
func runDecnetPath(ctx context.Context, ws workspace, l *localStack, logDir string, out io.Writer) (err error) {
	backQueue := l.stack.QueueURL(devstack.PublishBackQueueID)
	if backQueue == "" {
		return errors.New("the stack has no publish-back queue (PublishBackToDecnet=false)")
	}
	dir, err := os.MkdirTemp("", "decnet-run")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	socket := filepath.Join(dir, "bus.sock")
	logFile, err := os.Create(filepath.Join(logDir, "bridge.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	logger := slog.New(slog.NewTextHandler(logFile, nil))

	fmt.Fprintf(out, "\n== the DECNET path: publisher → bus → bridge → queue → function → EventBridge → alerts and back onto the bus\n")
	bus, err := busrig.Listen(socket, busrig.ServerOptions{Logger: logger})
	if err != nil {
		return err
	}
	defer bus.Close()
	fmt.Fprintf(out, "bus server (DECNET's protocol) on %s\n", socket)

	mapping, err := mappingFor(l.stack, l.emulator.InvokeURL, logger)
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { _ = mapping.Run(runCtx) })
	fmt.Fprintf(out, "event source mapping ObservationQueue → function (batch size %d, window %s)\n",
		l.stack.Function.EventSources[0].BatchSize, l.stack.Function.EventSources[0].MaximumBatchingWindow)

	cfg := devstack.AWSConfig(l.stack.Endpoint, l.stack.Region)
	client := sqs.NewFromConfig(cfg)
	br, err := bridge.New(bridge.Config{
		SpoolDir: filepath.Join(dir, "spool"), BusSocket: socket, ClientName: "attribution-bridge",
		QueueURL: l.stack.QueueURL(devstack.ObservationQueueID), SQS: client,
		PublishBackQueueURL: backQueue, PublishBackSQS: client, PublishBackWait: time.Second,
		SummaryInterval: 2 * time.Second, Logger: logger,
	})
	if err != nil {
		return err
	}
	bridgeDone := make(chan error, 1)
	go func() { bridgeDone <- br.Run(runCtx) }()
	defer func() {
		stop()
		if berr := <-bridgeDone; berr != nil {
			err = errors.Join(err, berr)
		}
	}()

	// DECNET's dashboard, as far as the bus goes: it hears what the bridge
	// publishes back.
	var mu sync.Mutex
	var back []decnetbus.Envelope
	dashboard := &decnetbus.Client{Path: socket, Name: "dashboard", Patterns: []string{"attribution.profile.>"}}
	wg.Go(func() {
		_ = dashboard.Run(runCtx, func(ev decnetbus.Event) {
			var env decnetbus.Envelope
			if json.Unmarshal(ev.Body, &env) == nil {
				mu.Lock()
				back = append(back, env)
				mu.Unlock()
			}
		})
	})
	profiler := &decnetbus.Client{Path: socket, Name: "profiler"}
	wg.Go(func() { _ = profiler.Run(runCtx, func(decnetbus.Event) {}) })
	if err := waitUntil(runCtx, 10*time.Second, func() bool {
		return profiler.Connected() && bus.Subscribers("attacker.observation.x.y") == 1 && bus.Subscribers("attribution.profile.state_changed") == 1
	}); err != nil {
		return fmt.Errorf("bus clients did not connect: %w", err)
	}

	stream := busrig.ObservationStream(2026, decnetObservations, 8)
	fmt.Fprintf(out, "publishing %d observations of 8 attackers on attacker.observation.<primitive>, as DECNET's profiler does\n", len(stream))
	if err := (&busrig.Publisher{Client: profiler, Interval: time.Millisecond}).Publish(runCtx, stream); err != nil {
		return err
	}
	if err := waitUntil(runCtx, 60*time.Second, func() bool {
		st := br.Stats()
		return st.Spooled == int64(len(stream)) && st.SpoolDepth == 0
	}); err != nil {
		return fmt.Errorf("the bridge did not send everything: %+v", br.Stats())
	}
	st := br.Stats()
	fmt.Fprintf(out, "bridge: received %d, spooled %d, sent %d to the observation queue, failed %d, spool depth %d\n", st.Received, st.Spooled, st.Sent, st.Failed, st.SpoolDepth)

	if err := waitUntil(runCtx, 120*time.Second, func() bool { return queueIdle(runCtx, client, l.stack.QueueURL(devstack.ObservationQueueID)) }); err != nil {
		return fmt.Errorf("the function did not work through the queue: %+v", mapping.Stats())
	}
	ms := mapping.Stats()
	fmt.Fprintf(out, "function: %+v\n", ms)
	// Events go EventBridge → publish-back queue → bridge → bus; wait
	// until nothing new arrives for a while.
	last, quiet := -1, time.Now()
	_ = waitUntil(runCtx, 60*time.Second, func() bool {
		mu.Lock()
		n := len(back)
		mu.Unlock()
		if n != last {
			last, quiet = n, time.Now()
		}
		return n > 0 && time.Since(quiet) > 4*time.Second && queueIdle(runCtx, client, backQueue)
	})
	mu.Lock()
	defer mu.Unlock()
	counts := map[string]int{}
	for _, e := range back {
		counts[e.Topic]++
	}
	st = br.Stats()
	fmt.Fprintf(out, "back on DECNET's bus (heard by a dashboard subscriber): %d events, published once each by the bridge (%d repeats skipped)\n", len(back), st.DuplicateBack)
	topics := make([]string, 0, len(counts))
	for t := range counts {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	for _, t := range topics {
		fmt.Fprintf(out, "  %-45s %d\n", t, counts[t])
	}
	for i, e := range back {
		if i == 3 {
			break
		}
		fmt.Fprintf(out, "  e.g. %s %s\n", e.Topic, e.Payload)
	}
	fmt.Fprintf(out, "bridge log: %s\n", rel(ws, logFile.Name()))
	return nil
}

func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return context.DeadlineExceeded
		}
		if err := backoff.Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// queueIdle reports whether a queue has no message, visible or in flight.
func queueIdle(ctx context.Context, client *sqs.Client, url string) bool {
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{
		"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"}})
	if err != nil {
		return false
	}
	for _, v := range out.Attributes {
		if v != "0" {
			return false
		}
	}
	return true
}
