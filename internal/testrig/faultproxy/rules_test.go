package faultproxy_test

import (
	"errors"
	"math"
	"net/http"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"decnet-attribution/internal/testrig/faultproxy"
)

func TestInvalidRulesAreRejected(t *testing.T) {
	tests := []struct {
		name  string
		rules []faultproxy.Rule
	}{
		{name: "unknown service", rules: []faultproxy.Rule{{Service: "s3", Throttle: 1}}},
		{name: "negative rate", rules: []faultproxy.Rule{{Service: faultproxy.DynamoDB, InternalError: -0.1}}},
		{name: "rate above 1", rules: []faultproxy.Rule{{Service: faultproxy.SQS, Delay: 1.5, DelayDuration: time.Second}}},
		{name: "NaN rate", rules: []faultproxy.Rule{{Service: faultproxy.DynamoDB, Throttle: math.NaN()}}},
		{name: "whole-request rates above 1", rules: []faultproxy.Rule{{Service: faultproxy.DynamoDB, Throttle: 0.6, DropAfterForward: 0.6}}},
		{name: "provisioned throughput outside DynamoDB", rules: []faultproxy.Rule{{Service: faultproxy.EventBridge, ProvisionedThroughputExceeded: 0.1}}},
		{name: "entry failures outside EventBridge", rules: []faultproxy.Rule{{Service: faultproxy.SQS, FailEntry: 0.1}}},
		{name: "entry failures outside PutEvents", rules: []faultproxy.Rule{{Service: faultproxy.EventBridge, Operation: "PutRule", FailEntry: 0.1}}},
		{name: "delay without duration", rules: []faultproxy.Rule{{Service: faultproxy.DynamoDB, Delay: 0.5}}},
		{name: "duplicate rule", rules: []faultproxy.Rule{{Service: faultproxy.DynamoDB, Operation: "PutItem"}, {Service: faultproxy.DynamoDB, Operation: "PutItem", Throttle: 1}}},
	}
	faults := mustInjector(t, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := faults.SetRules(tt.rules...); !errors.Is(err, faultproxy.ErrInvalidRule) {
				t.Errorf("SetRules: err = %v, want ErrInvalidRule", err)
			}
			if _, err := faultproxy.New(faultproxy.Config{Rules: tt.rules}); !errors.Is(err, faultproxy.ErrInvalidRule) {
				t.Errorf("New: err = %v, want ErrInvalidRule", err)
			}
		})
	}
}

func TestStartRejectsBadUpstream(t *testing.T) {
	for _, upstream := range []string{"", "127.0.0.1:5000", "ftp://host", "http://"} {
		if p, err := faultproxy.Start(upstream, mustInjector(t, 0)); err == nil {
			_ = p.Close()
			t.Errorf("Start(%q) succeeded, want an error", upstream)
		}
	}
}

func TestUnreachableUpstreamAnswersBadGateway(t *testing.T) {
	faults := mustInjector(t, 0)
	p := mustProxy(t, "http://127.0.0.1:1", faults)

	_, err := newClients(p.URL(), nil).ddb.ListTables(testContext(t), &dynamodb.ListTablesInput{})
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusBadGateway {
		t.Errorf("ListTables error = %v, want an HTTP 502 response", err)
	}
	wantUpstreamError(t, faults.Stats())
}

func TestUnreachableUpstreamFailsTheSend(t *testing.T) {
	faults := mustInjector(t, 0)
	_, err := newClients("http://127.0.0.1:1", faults.Client()).ddb.ListTables(testContext(t), &dynamodb.ListTablesInput{})
	var sendErr *smithyhttp.RequestSendError
	if !errors.As(err, &sendErr) {
		t.Errorf("ListTables error = %v, want a request send error", err)
	}
	wantUpstreamError(t, faults.Stats())
}

func wantUpstreamError(tb testing.TB, s faultproxy.Stats) {
	tb.Helper()
	if s.Requests != 1 || s.Forwarded != 0 || s.UpstreamErrors != 1 || len(s.Faults) != 0 {
		tb.Errorf("stats = %+v, want one request counted as an upstream error", s.Counts)
	}
}
