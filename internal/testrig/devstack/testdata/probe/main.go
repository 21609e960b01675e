// Command probe is a Lambda function for testing the local stack tooling:
// it reports its environment and process ID, writes to DynamoDB through the
// endpoint its environment names, and fails or exits on request.
package main

import (
	"context"
	"errors"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

type request struct {
	Env      []string `json:"env"`       // variables to report
	PutTable string   `json:"put_table"` // table to write {attacker_uuid: put_key}
	PutKey   string   `json:"put_key"`
	SleepMS  int      `json:"sleep_ms"`
	Fail     string   `json:"fail"` // return this error
	Exit     *int     `json:"exit"` // exit the process with this code
}

type response struct {
	PID int               `json:"pid"`
	Env map[string]string `json:"env"`
}

func handle(ctx context.Context, req request) (response, error) {
	time.Sleep(time.Duration(req.SleepMS) * time.Millisecond)
	if req.Exit != nil {
		os.Exit(*req.Exit)
	}
	if req.Fail != "" {
		return response{}, errors.New(req.Fail)
	}
	if req.PutTable != "" {
		cfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return response{}, err
		}
		_, err = dynamodb.NewFromConfig(cfg).PutItem(ctx, &dynamodb.PutItemInput{
			TableName: aws.String(req.PutTable),
			Item: map[string]types.AttributeValue{
				"attacker_uuid": &types.AttributeValueMemberS{Value: req.PutKey},
				"pid":           &types.AttributeValueMemberN{Value: strconv.Itoa(os.Getpid())},
			},
		})
		if err != nil {
			return response{}, err
		}
	}
	out := response{PID: os.Getpid(), Env: map[string]string{}}
	for _, k := range req.Env {
		if v, ok := os.LookupEnv(k); ok {
			out.Env[k] = v
		}
	}
	return out, nil
}

func main() {
	lambda.Start(handle)
}
