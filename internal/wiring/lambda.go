package wiring

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"decnet-attribution/internal/config"
)

// Environment reads what a cold start needs: the function's configuration
// and the AWS SDK's, both from the process environment. Every build of the
// function (the production one and the rig's crash-enabled one) starts
// here, so they cannot read their settings differently.
func Environment(ctx context.Context) (config.Config, aws.Config, error) {
	cfg, err := config.FromEnv(os.LookupEnv)
	if err != nil {
		return cfg, aws.Config{}, fmt.Errorf("invalid configuration: %w", err)
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return cfg, aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	return cfg, awsCfg, nil
}

// LambdaOptions are the Options of the function under Lambda: metrics on
// standard output, dimensioned by the function's name.
func LambdaOptions(logger *slog.Logger) Options {
	return Options{
		Logger:       logger,
		MetricsOut:   os.Stdout,
		FunctionName: os.Getenv("AWS_LAMBDA_FUNCTION_NAME"),
	}
}
