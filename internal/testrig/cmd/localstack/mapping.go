package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"decnet-attribution/internal/testrig/devstack"
	"decnet-attribution/internal/testrig/sqspoller"
)

// mappingFor is the event source mapping of the function's SQS event
// source, with the template's batch size and batching window, invoking
// the function at invokeURL.
func mappingFor(stack *devstack.Stack, invokeURL string, logger *slog.Logger) (*sqspoller.Mapping, error) {
	if len(stack.Function.EventSources) == 0 {
		return nil, errors.New("the function has no SQS event source in template.yaml")
	}
	src := stack.Function.EventSources[0]
	cfg := devstack.AWSConfig(stack.Endpoint, stack.Region)
	return sqspoller.New(sqs.NewFromConfig(cfg), &sqspoller.HTTPInvoker{URL: invokeURL}, sqspoller.Config{
		QueueURL:              src.QueueURL,
		BatchSize:             src.BatchSize,
		MaximumBatchingWindow: src.MaximumBatchingWindow,
		// The emulator runs one invocation at a time.
		Pollers: 1,
		Logger:  logger,
	})
}

// mappingArgs are the arguments of the esm command that runs a stack's
// mapping in the background.
func mappingArgs(ws workspace, stack *devstack.Stack, invokeURL string) ([]string, error) {
	if len(stack.Function.EventSources) == 0 {
		return nil, errors.New("the function has no SQS event source in template.yaml")
	}
	src := stack.Function.EventSources[0]
	return []string{
		"-root", ws.root, "esm",
		"-queue-url", src.QueueURL,
		"-batch-size", strconv.Itoa(src.BatchSize),
		"-window", src.MaximumBatchingWindow.String(),
		"-invoke-url", invokeURL,
		"-endpoint", stack.Endpoint,
		"-region", stack.Region,
	}, nil
}

// startDetachedMapping starts `localstack esm` for the stack in a session
// of its own, so it outlives up; down stops it.
func startDetachedMapping(ws workspace, stack *devstack.Stack, invokeURL string) (*devstack.Process, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args, err := mappingArgs(ws, stack, invokeURL)
	if err != nil {
		return nil, err
	}
	env := append(os.Environ(),
		"AWS_ACCESS_KEY_ID="+devstack.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+devstack.SecretAccessKey)
	return devstack.StartProcess(devstack.ProcessOptions{
		Name: "event source mapping", Path: self, Args: args, Env: env,
		LogPath: ws.local("logs", "esm.log"), Detach: true,
	})
}

// cmdMapping runs an event source mapping in the foreground until SIGTERM
// or SIGINT: what `up` leaves running so that messages sent to the queue
// are processed, as Lambda's own mapping does.
func cmdMapping(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("esm", flag.ContinueOnError)
	queue := fs.String("queue-url", "", "source queue")
	batch := fs.Int("batch-size", sqspoller.DefaultBatchSize, "messages per invocation")
	window := fs.Duration("window", 0, "maximum batching window")
	invokeURL := fs.String("invoke-url", "", "the function's invocation URL (the emulator's)")
	endpoint := fs.String("endpoint", "", "AWS endpoint (moto)")
	region := fs.String("region", devstack.DefaultRegion, "AWS region")
	if err := fs.Parse(args); err != nil || *queue == "" || *invokeURL == "" || *endpoint == "" {
		return fmt.Errorf("%w (esm -queue-url URL -invoke-url URL -endpoint URL [-batch-size N] [-window D])", errUsage)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	m, err := sqspoller.New(sqs.NewFromConfig(devstack.AWSConfig(*endpoint, *region)), &sqspoller.HTTPInvoker{URL: *invokeURL}, sqspoller.Config{
		QueueURL: *queue, BatchSize: *batch, MaximumBatchingWindow: *window, Pollers: 1, Logger: logger,
	})
	if err != nil {
		return err
	}
	logger.Info("event source mapping started", "queue", *queue, "batch_size", *batch, "window", window.String(), "function", *invokeURL)
	stats := time.NewTicker(time.Minute)
	defer stats.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-stats.C:
				logger.Info("event source mapping", "stats", fmt.Sprintf("%+v", m.Stats()))
			}
		}
	}()
	err = m.Run(ctx)
	logger.Info("event source mapping stopped", "stats", fmt.Sprintf("%+v", m.Stats()))
	return err
}
