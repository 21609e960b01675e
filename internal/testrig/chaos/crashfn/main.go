// Command crashfn is the attribution function with crash points, for chaos
// runs under the Lambda Runtime Interface Emulator. It wires the function
// exactly as functions/attribution does (wiring.Environment,
// wiring.LambdaOptions, wiring.New), and wraps
// its store and its publisher with internal/testrig/chaos/crash: at the sites the
// crash plan chooses
// (CHAOS_CRASH_* variables, see crash.ConfigFromEnv) the process exits, a
// real death in the middle of an invocation. It can also log every commit
// it applied (CHAOS_APPLIED_LOG), so the harness knows the order in which
// observations were applied.
//
// It is built only by the chaos harness; the production function has no
// crash points.
package main

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
	"decnet-attribution/internal/testrig/chaos/crash"
	"decnet-attribution/internal/wiring"
)

func main() {
	logger := lambdacontext.NewLogger()
	cfg, awsCfg, err := wiring.Environment(context.Background())
	if err != nil {
		logger.Error("cannot start", "error", err.Error())
		os.Exit(1)
	}
	plan, err := crash.ConfigFromEnv(os.LookupEnv)
	if err != nil {
		logger.Error("invalid crash configuration", "error", err.Error())
		os.Exit(1)
	}
	var retries atomic.Int64
	awsCfg.Retryer = func() aws.Retryer { return &crash.CountingRetryer{RetryerV2: retry.NewStandard(), N: &retries} }

	var recorder *crash.FileRecorder
	var probe attribution.Store
	if plan.AppliedLog != "" {
		if recorder, err = crash.OpenFileRecorder(plan.AppliedLog); err != nil {
			logger.Error("open applied log", "error", err.Error())
			os.Exit(1)
		}
		probeCfg := awsCfg.Copy()
		probeCfg.BaseEndpoint = aws.String(plan.ProbeEndpoint)
		probe = ddbstore.New(dynamodb.NewFromConfig(probeCfg), ddbstore.Tables{
			Identities: cfg.IdentitiesTable, Observations: cfg.ObservationsTable, States: cfg.StatesTable,
		}, cfg.ObservationTTL)
	}
	die := func(point crash.Point, site string) error {
		logger.Warn("crash injected", "point", string(point), "site", site)
		os.Exit(crash.ExitCode)
		return nil
	}
	crashPlan := plan.Plan()
	handler, err := wiring.New(cfg, awsCfg, wiring.LambdaOptions(logger))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The crash points wrap the adapters the function was wired with.
	proc := handler.Processor
	st := &crash.Store{Store: proc.Store, Plan: crashPlan, Die: die, Probe: probe, Exits: true}
	if recorder != nil {
		st.Recorder = recorder
	}
	proc.Store = st
	proc.Publisher = &crash.Publisher{Publisher: proc.Publisher, Plan: crashPlan, Die: die}
	lambda.Start(func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		resp, err := handler.Handle(ctx, ev)
		if n := retries.Swap(0); n > 0 {
			fmt.Printf("{\"chaos_sdk_retries\":%d}\n", n)
		}
		return resp, err
	})
}
