// Package wiring assembles the attribution Lambda from its configuration
// and AWS clients: the one place that knows which adapter fills which port.
package wiring

import (
	"io"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/config"
	"decnet-attribution/internal/ddbstore"
	"decnet-attribution/internal/deadletter"
	"decnet-attribution/internal/emf"
	"decnet-attribution/internal/eventbus"
	"decnet-attribution/internal/sqshandler"
)

// MetricsNamespace is the CloudWatch namespace of the service's metrics.
const MetricsNamespace = "DecnetAttribution"

// Metric names besides the processor's.
const (
	MetricPublishRetries    = "PublishRetries"
	MetricPublishPermanents = "PublishPermanentFailures"
)

// Options are the parts tests and tools replace.
type Options struct {
	Logger *slog.Logger
	// MetricsOut receives the EMF lines (standard output in Lambda).
	MetricsOut io.Writer
	// FunctionName is the metrics dimension.
	FunctionName string
	// DynamoDBOptions and EventBridgeOptions adjust the clients (e.g. a
	// capacity meter, a test endpoint).
	DynamoDBOptions    []func(*dynamodb.Options)
	EventBridgeOptions []func(*eventbridge.Options)
	// CallTimeout bounds each HTTP attempt of every AWS call (0:
	// DefaultCallTimeout), so a stalled connection cannot hold the batch
	// until the function times out. It applies to the SDK's own client;
	// a client supplied in aws.Config.HTTPClient is left as it is.
	CallTimeout time.Duration
}

// New builds the SQS handler.
func New(cfg config.Config, awsCfg aws.Config, opts Options) (*sqshandler.Handler, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	metrics := &emf.Recorder{
		Namespace:  MetricsNamespace,
		Dimensions: map[string]string{"FunctionName": opts.FunctionName},
		Names: []string{
			attribution.MetricObservations, attribution.MetricDuplicates, attribution.MetricAmendments,
			attribution.MetricTransitions, attribution.MetricSuspicions, attribution.MetricVersionConflicts,
			attribution.MetricRejected, attribution.MetricPublishFailures, MetricPublishRetries, MetricPublishPermanents,
		},
		Level: cfg.LogLevel,
		Out:   opts.MetricsOut,
	}
	if metrics.Out == nil {
		metrics.Out = io.Discard
	}
	awsCfg.HTTPClient = boundedHTTPClient(awsCfg.HTTPClient, opts.CallTimeout)
	ddb := dynamodb.NewFromConfig(awsCfg, opts.DynamoDBOptions...)
	store := ddbstore.New(ddb, ddbstore.Tables{
		Identities:   cfg.IdentitiesTable,
		Observations: cfg.ObservationsTable,
		States:       cfg.StatesTable,
	}, cfg.ObservationTTL)
	publisher, err := eventbus.New(eventbridge.NewFromConfig(awsCfg, opts.EventBridgeOptions...), eventbus.Config{
		BusName: cfg.EventBusName,
		Logger:  logger,
		Metrics: publishMetrics{metrics},
	})
	if err != nil {
		return nil, err
	}
	h := &sqshandler.Handler{
		Processor: &attribution.Processor{
			Store:       store,
			Identities:  store,
			Publisher:   publisher,
			Registry:    cfg.Registry,
			Thresholds:  cfg.Thresholds,
			Logger:      logger,
			Metrics:     metrics,
			Concurrency: cfg.Concurrency,
			CacheBytes:  cfg.CacheBytes,
		},
		Logger:  logger,
		Metrics: metrics,
	}
	if cfg.DeadLetterQueueURL != "" {
		h.DeadLetters = &deadletter.Queue{Client: sqs.NewFromConfig(awsCfg), URL: cfg.DeadLetterQueueURL}
	}
	return h, nil
}

// DefaultCallTimeout is Options.CallTimeout's default: far above a normal
// DynamoDB, EventBridge or SQS round trip, well below the shortest
// function timeout the template allows (10 s).
const DefaultCallTimeout = 5 * time.Second

// boundedHTTPClient gives the SDK's HTTP client an overall timeout per
// attempt; the SDK's default has none.
func boundedHTTPClient(c aws.HTTPClient, timeout time.Duration) aws.HTTPClient {
	if timeout <= 0 {
		timeout = DefaultCallTimeout
	}
	switch b := c.(type) {
	case nil:
		return awshttp.NewBuildableClient().WithTimeout(timeout)
	case *awshttp.BuildableClient:
		return b.WithTimeout(timeout)
	default:
		return c
	}
}

// publishMetrics counts the publisher's retries in the EMF recorder.
type publishMetrics struct{ r *emf.Recorder }

func (m publishMetrics) AddPublishRetries(n int)    { m.r.Add(MetricPublishRetries, n) }
func (m publishMetrics) AddPermanentFailures(n int) { m.r.Add(MetricPublishPermanents, n) }
