// Command attribution is the Lambda function: SQS observation messages in,
// DynamoDB state and EventBridge transitions out. It only wires: the
// configuration is read and the clients are built once, at init.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"decnet-attribution/internal/config"
	"decnet-attribution/internal/wiring"
)

func main() {
	logger := lambdacontext.NewLogger()
	cfg, err := config.FromEnv(os.LookupEnv)
	if err != nil {
		logger.Error("invalid configuration", "error", err.Error())
		os.Exit(1)
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(context.Background())
	if err != nil {
		logger.Error("load AWS configuration", "error", err.Error())
		os.Exit(1)
	}
	handler, err := wiring.New(cfg, awsCfg, wiring.Options{
		Logger:       logger,
		MetricsOut:   os.Stdout,
		FunctionName: os.Getenv("AWS_LAMBDA_FUNCTION_NAME"),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lambda.Start(handler.Handle)
}
