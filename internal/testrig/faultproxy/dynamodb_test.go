package faultproxy_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"decnet-attribution/internal/testrig/faultproxy"
)

func TestDynamoDBErrorResponsesDecodeAsSDKErrors(t *testing.T) {
	moto := mustMoto(t)
	direct := newClients(moto)
	table := mustTable(t, direct)

	tests := []struct {
		name       string
		rule       faultproxy.Rule
		fault      faultproxy.Fault
		wantStatus int
		wantErr    func(error) bool
	}{
		{
			name:       "provisioned throughput exceeded",
			rule:       faultproxy.Rule{Service: faultproxy.DynamoDB, Operation: "PutItem", ProvisionedThroughputExceeded: 1},
			fault:      faultproxy.FaultProvisionedThroughputExceeded,
			wantStatus: http.StatusBadRequest,
			wantErr: func(err error) bool {
				var e *ddbtypes.ProvisionedThroughputExceededException
				return errors.As(err, &e)
			},
		},
		{
			name:       "throttling",
			rule:       faultproxy.Rule{Service: faultproxy.DynamoDB, Operation: "PutItem", Throttle: 1},
			fault:      faultproxy.FaultThrottle,
			wantStatus: http.StatusBadRequest,
			wantErr: func(err error) bool {
				var e *ddbtypes.ThrottlingException
				return errors.As(err, &e)
			},
		},
		{
			name:       "internal server error",
			rule:       faultproxy.Rule{Service: faultproxy.DynamoDB, InternalError: 1},
			fault:      faultproxy.FaultInternalError,
			wantStatus: http.StatusInternalServerError,
			wantErr: func(err error) bool {
				var e *ddbtypes.InternalServerError
				return errors.As(err, &e)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustProxy(t, moto, 1, tt.rule)
			pk := uniqueName("item")
			_, err := newClients(p.URL()).ddb.PutItem(testContext(t), putItemInput(table, pk))
			if err == nil {
				t.Fatal("PutItem through the proxy succeeded, want an injected error")
			}
			if !tt.wantErr(err) {
				t.Errorf("PutItem error = %T %v, not the expected SDK error type", err, err)
			}
			var re *awshttp.ResponseError
			if !errors.As(err, &re) || re.HTTPStatusCode() != tt.wantStatus {
				t.Errorf("PutItem error %v: want an HTTP %d response error", err, tt.wantStatus)
			}
			if itemExists(t, direct, table, pk) {
				t.Error("item was written although the request was answered by the proxy")
			}
			s := p.Stats()
			wantCounts(t, "total", s.Counts, 1, 0, map[faultproxy.Fault]int64{tt.fault: 1})
			wantCounts(t, "PutItem", s.ByOp[faultproxy.Op{Service: faultproxy.DynamoDB, Name: "PutItem"}], 1, 0, map[faultproxy.Fault]int64{tt.fault: 1})
		})
	}
}

func TestDynamoDBDroppedConnections(t *testing.T) {
	moto := mustMoto(t)
	direct := newClients(moto)
	table := mustTable(t, direct)

	tests := []struct {
		name          string
		rule          faultproxy.Rule
		fault         faultproxy.Fault
		wantWritten   bool
		wantForwarded int64
	}{
		{
			name:          "after forward: write applied, answer lost",
			rule:          faultproxy.Rule{Service: faultproxy.DynamoDB, Operation: "PutItem", DropAfterForward: 1},
			fault:         faultproxy.FaultDropAfterForward,
			wantWritten:   true,
			wantForwarded: 1,
		},
		{
			name:          "before forward: write never arrives",
			rule:          faultproxy.Rule{Service: faultproxy.DynamoDB, Operation: "PutItem", DropBeforeForward: 1},
			fault:         faultproxy.FaultDropBeforeForward,
			wantWritten:   false,
			wantForwarded: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustProxy(t, moto, 1, tt.rule)
			pk := uniqueName("item")
			_, err := newClients(p.URL()).ddb.PutItem(testContext(t), putItemInput(table, pk))
			if err == nil {
				t.Fatal("PutItem through the proxy succeeded, want a broken connection")
			}
			var sendErr *smithyhttp.RequestSendError
			if !errors.As(err, &sendErr) {
				t.Errorf("PutItem error %v: want a request send error (no HTTP response)", err)
			}
			if got := itemExists(t, direct, table, pk); got != tt.wantWritten {
				t.Errorf("item written = %v, want %v", got, tt.wantWritten)
			}
			wantCounts(t, "total", p.Stats().Counts, 1, tt.wantForwarded, map[faultproxy.Fault]int64{tt.fault: 1})
		})
	}
}

func TestDelayHoldsRequestThenForwards(t *testing.T) {
	moto := mustMoto(t)
	direct := newClients(moto)
	table := mustTable(t, direct)
	const delay = 150 * time.Millisecond
	p := mustProxy(t, moto, 1, faultproxy.Rule{Service: faultproxy.DynamoDB, Delay: 1, DelayDuration: delay})

	pk := uniqueName("item")
	start := time.Now()
	if _, err := newClients(p.URL()).ddb.PutItem(testContext(t), putItemInput(table, pk)); err != nil {
		t.Fatalf("delayed PutItem: %v", err)
	}
	if elapsed := time.Since(start); elapsed < delay {
		t.Errorf("PutItem took %v, want at least the %v delay", elapsed, delay)
	}
	if !itemExists(t, direct, table, pk) {
		t.Error("delayed item was not written")
	}
	wantCounts(t, "total", p.Stats().Counts, 1, 1, map[faultproxy.Fault]int64{faultproxy.FaultDelay: 1})
}

func TestOperationRuleOverridesServiceRuleAndSetRulesApplies(t *testing.T) {
	moto := mustMoto(t)
	direct := newClients(moto)
	table := mustTable(t, direct)
	p := mustProxy(t, moto, 1,
		faultproxy.Rule{Service: faultproxy.DynamoDB, Throttle: 1},
		faultproxy.Rule{Service: faultproxy.DynamoDB, Operation: "PutItem"}, // no faults for PutItem
	)
	c := newClients(p.URL())
	ctx := testContext(t)

	if _, err := c.ddb.PutItem(ctx, putItemInput(table, "a")); err != nil {
		t.Errorf("PutItem under its own fault-free rule: %v", err)
	}
	var throttled *ddbtypes.ThrottlingException
	if _, err := c.ddb.ListTables(ctx, &dynamodb.ListTablesInput{}); !errors.As(err, &throttled) {
		t.Errorf("ListTables under the service-wide rule: err = %v, want ThrottlingException", err)
	}

	if err := p.SetRules(); err != nil {
		t.Fatalf("clear rules: %v", err)
	}
	if _, err := c.ddb.ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
		t.Errorf("ListTables after clearing the rules: %v", err)
	}
	s := p.Stats()
	wantCounts(t, "total", s.Counts, 3, 2, map[faultproxy.Fault]int64{faultproxy.FaultThrottle: 1})
	wantCounts(t, "ListTables", s.ByOp[faultproxy.Op{Service: faultproxy.DynamoDB, Name: "ListTables"}], 2, 1, map[faultproxy.Fault]int64{faultproxy.FaultThrottle: 1})
}

// outcome classifies the result of one call for the determinism tests.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var sendErr *smithyhttp.RequestSendError
	if errors.As(err, &sendErr) {
		return "dropped"
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return fmt.Sprint(re.HTTPStatusCode())
	}
	return "other: " + err.Error()
}

var mixedRules = []faultproxy.Rule{{
	Service:           faultproxy.DynamoDB,
	InternalError:     0.3,
	Throttle:          0.1,
	DropBeforeForward: 0.1,
}}

// listTablesOutcomes runs n sequential ListTables calls through a fresh proxy.
func listTablesOutcomes(t *testing.T, moto string, seed int64, n int) ([]string, faultproxy.Stats) {
	t.Helper()
	p := mustProxy(t, moto, seed, mixedRules...)
	c := newClients(p.URL())
	ctx := testContext(t)
	out := make([]string, n)
	for i := range out {
		_, err := c.ddb.ListTables(ctx, &dynamodb.ListTablesInput{})
		out[i] = outcome(err)
	}
	return out, p.Stats()
}

func TestSameSeedInjectsSameFaults(t *testing.T) {
	moto := mustMoto(t)
	const n = 40
	first, stats := listTablesOutcomes(t, moto, 7, n)
	second, _ := listTablesOutcomes(t, moto, 7, n)
	other, _ := listTablesOutcomes(t, moto, 8, n)

	if fmt.Sprint(first) != fmt.Sprint(second) {
		t.Errorf("same seed, different outcomes:\n%v\n%v", first, second)
	}
	if fmt.Sprint(first) == fmt.Sprint(other) {
		t.Errorf("seeds 7 and 8 gave identical outcomes over %d calls: %v", n, first)
	}

	tally := map[string]int64{}
	for _, o := range first {
		tally[o]++
	}
	f := stats.Faults
	if tally["500"] != f[faultproxy.FaultInternalError] || tally["400"] != f[faultproxy.FaultThrottle] ||
		tally["dropped"] != f[faultproxy.FaultDropBeforeForward] || tally["ok"] != stats.Forwarded {
		t.Errorf("client outcomes %v disagree with stats %+v", tally, stats.Counts)
	}
	if tally["500"] == 0 || tally["400"] == 0 || tally["dropped"] == 0 || tally["ok"] == 0 {
		t.Errorf("outcomes %v: want every kind at these rates over %d calls", tally, n)
	}
}

func TestConcurrentRequestsGetSameFaultCountsAsSequential(t *testing.T) {
	moto := mustMoto(t)
	const workers, perWorker = 4, 10
	_, sequential := listTablesOutcomes(t, moto, 11, workers*perWorker)

	p := mustProxy(t, moto, 11, mixedRules...)
	ctx := testContext(t)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClients(p.URL())
			for range perWorker {
				_, _ = c.ddb.ListTables(ctx, &dynamodb.ListTablesInput{})
				_ = p.Stats() // snapshots race with updates under -race
			}
		}()
	}
	wg.Wait()

	got := p.Stats()
	wantCounts(t, "concurrent vs sequential", got.Counts, sequential.Requests, sequential.Forwarded, sequential.Faults)
	if got.Requests != workers*perWorker {
		t.Errorf("requests = %d, want %d", got.Requests, workers*perWorker)
	}
}

func TestCloseWaitsForInFlightRequests(t *testing.T) {
	moto := mustMoto(t)
	p, err := faultproxy.Start(faultproxy.Config{
		Upstream: moto,
		Rules:    []faultproxy.Rule{{Service: faultproxy.DynamoDB, Delay: 1, DelayDuration: 10 * time.Second}},
	})
	if err != nil {
		t.Fatalf("start proxy: %v", err)
	}
	c := newClients(p.URL())
	ctx := testContext(t)

	done := make(chan error, 1)
	go func() {
		_, err := c.ddb.ListTables(ctx, &dynamodb.ListTablesInput{})
		done <- err
	}()
	for p.Stats().Faults[faultproxy.FaultDelay] == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("request never reached its delay")
		case <-time.After(5 * time.Millisecond):
		}
	}

	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Close took %v; pending delays should be cut short", elapsed)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("in-flight request failed across Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Error("in-flight request still unanswered after Close returned")
	}
	if got := p.Stats().Forwarded; got != 1 {
		t.Errorf("forwarded = %d, want 1", got)
	}

	ctx2, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.ddb.ListTables(ctx2, &dynamodb.ListTablesInput{}); err == nil {
		t.Error("request after Close succeeded; want the listener gone")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestUnrecognisedRequestsPassThrough(t *testing.T) {
	moto := mustMoto(t)
	p := mustProxy(t, moto, 1, faultproxy.Rule{Service: faultproxy.DynamoDB, InternalError: 1})

	resp, err := http.Get(p.URL() + "/moto-api/")
	if err != nil {
		t.Fatalf("GET through proxy: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status = %d, want 200 from the upstream", resp.StatusCode)
	}
	s := p.Stats()
	wantCounts(t, "total", s.Counts, 1, 1, nil)
	wantCounts(t, "unrecognised", s.ByOp[faultproxy.Op{}], 1, 1, nil)
}
