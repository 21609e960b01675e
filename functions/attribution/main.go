// Command attribution is the Lambda function: SQS observation messages in,
// DynamoDB state and EventBridge transitions out. It only wires: the
// configuration is read and the clients are built once, at init.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"decnet-attribution/internal/wiring"
)

func main() {
	logger := lambdacontext.NewLogger()
	cfg, awsCfg, err := wiring.Environment(context.Background())
	if err != nil {
		logger.Error("cannot start", "error", err.Error())
		os.Exit(1)
	}
	handler, err := wiring.New(cfg, awsCfg, wiring.LambdaOptions(logger))
	if err != nil {
		logger.Error("cannot start", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(handler.Handle)
}
