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
	direct := newClients(moto, nil)
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
	eachRoute(t, func(t *testing.T, r route) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				faults := mustInjector(t, 1, tt.rule)
				pk := uniqueName("item")
				_, err := r.clients(t, moto, faults).ddb.PutItem(testContext(t), putItemInput(table, pk))
				if err == nil {
					t.Fatal("PutItem through the injector succeeded, want an injected error")
				}
				if !tt.wantErr(err) {
					t.Errorf("PutItem error = %T %v, not the expected SDK error type", err, err)
				}
				var re *awshttp.ResponseError
				if !errors.As(err, &re) || re.HTTPStatusCode() != tt.wantStatus {
					t.Errorf("PutItem error %v: want an HTTP %d response error", err, tt.wantStatus)
				}
				if itemExists(t, direct, table, pk) {
					t.Error("item was written although the request was answered by the injector")
				}
				s := faults.Stats()
				wantCounts(t, "total", s.Counts, 1, 0, map[faultproxy.Fault]int64{tt.fault: 1})
				wantCounts(t, "PutItem", s.ByOp[faultproxy.Op{Service: faultproxy.DynamoDB, Name: "PutItem"}], 1, 0, map[faultproxy.Fault]int64{tt.fault: 1})
			})
		}
	})
}

func TestDynamoDBDroppedConnections(t *testing.T) {
	moto := mustMoto(t)
	direct := newClients(moto, nil)
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
	eachRoute(t, func(t *testing.T, r route) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				faults := mustInjector(t, 1, tt.rule)
				pk := uniqueName("item")
				_, err := r.clients(t, moto, faults).ddb.PutItem(testContext(t), putItemInput(table, pk))
				if err == nil {
					t.Fatal("PutItem through the injector succeeded, want a broken connection")
				}
				var sendErr *smithyhttp.RequestSendError
				if !errors.As(err, &sendErr) {
					t.Errorf("PutItem error %v: want a request send error (no HTTP response)", err)
				}
				if got := itemExists(t, direct, table, pk); got != tt.wantWritten {
					t.Errorf("item written = %v, want %v", got, tt.wantWritten)
				}
				wantCounts(t, "total", faults.Stats().Counts, 1, tt.wantForwarded, map[faultproxy.Fault]int64{tt.fault: 1})
			})
		}
	})
}

func TestDelayHoldsRequestThenForwards(t *testing.T) {
	moto := mustMoto(t)
	direct := newClients(moto, nil)
	table := mustTable(t, direct)
	const delay = 150 * time.Millisecond
	eachRoute(t, func(t *testing.T, r route) {
		faults := mustInjector(t, 1, faultproxy.Rule{Service: faultproxy.DynamoDB, Delay: 1, DelayDuration: delay})
		pk := uniqueName("item")
		start := time.Now()
		if _, err := r.clients(t, moto, faults).ddb.PutItem(testContext(t), putItemInput(table, pk)); err != nil {
			t.Fatalf("delayed PutItem: %v", err)
		}
		if elapsed := time.Since(start); elapsed < delay {
			t.Errorf("PutItem took %v, want at least the %v delay", elapsed, delay)
		}
		if !itemExists(t, direct, table, pk) {
			t.Error("delayed item was not written")
		}
		wantCounts(t, "total", faults.Stats().Counts, 1, 1, map[faultproxy.Fault]int64{faultproxy.FaultDelay: 1})
	})
}

func TestOperationRuleOverridesServiceRuleAndSetRulesApplies(t *testing.T) {
	moto := mustMoto(t)
	direct := newClients(moto, nil)
	table := mustTable(t, direct)
	eachRoute(t, func(t *testing.T, r route) {
		faults := mustInjector(t, 1,
			faultproxy.Rule{Service: faultproxy.DynamoDB, Throttle: 1},
			faultproxy.Rule{Service: faultproxy.DynamoDB, Operation: "PutItem"}, // no faults for PutItem
		)
		c := r.clients(t, moto, faults)
		ctx := testContext(t)

		if _, err := c.ddb.PutItem(ctx, putItemInput(table, "a")); err != nil {
			t.Errorf("PutItem under its own fault-free rule: %v", err)
		}
		var throttled *ddbtypes.ThrottlingException
		if _, err := c.ddb.ListTables(ctx, &dynamodb.ListTablesInput{}); !errors.As(err, &throttled) {
			t.Errorf("ListTables under the service-wide rule: err = %v, want ThrottlingException", err)
		}

		if err := faults.SetRules(); err != nil {
			t.Fatalf("clear rules: %v", err)
		}
		if _, err := c.ddb.ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
			t.Errorf("ListTables after clearing the rules: %v", err)
		}
		s := faults.Stats()
		wantCounts(t, "total", s.Counts, 3, 2, map[faultproxy.Fault]int64{faultproxy.FaultThrottle: 1})
		wantCounts(t, "ListTables", s.ByOp[faultproxy.Op{Service: faultproxy.DynamoDB, Name: "ListTables"}], 2, 1, map[faultproxy.Fault]int64{faultproxy.FaultThrottle: 1})
	})
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

// listTablesOutcomes runs n sequential ListTables calls through a fresh
// injector.
func listTablesOutcomes(t *testing.T, r route, moto string, seed int64, n int) ([]string, faultproxy.Stats) {
	t.Helper()
	faults := mustInjector(t, seed, mixedRules...)
	c := r.clients(t, moto, faults)
	ctx := testContext(t)
	out := make([]string, n)
	for i := range out {
		_, err := c.ddb.ListTables(ctx, &dynamodb.ListTablesInput{})
		out[i] = outcome(err)
	}
	return out, faults.Stats()
}

func TestSameSeedInjectsSameFaults(t *testing.T) {
	moto := mustMoto(t)
	const n = 40
	eachRoute(t, func(t *testing.T, r route) {
		first, stats := listTablesOutcomes(t, r, moto, 7, n)
		second, _ := listTablesOutcomes(t, r, moto, 7, n)
		other, _ := listTablesOutcomes(t, r, moto, 8, n)

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
	})
}

func TestConcurrentRequestsGetSameFaultCountsAsSequential(t *testing.T) {
	moto := mustMoto(t)
	const workers, perWorker = 4, 10
	eachRoute(t, func(t *testing.T, r route) {
		_, sequential := listTablesOutcomes(t, r, moto, 11, workers*perWorker)

		faults := mustInjector(t, 11, mixedRules...)
		endpoint, hc := r.open(t, moto, faults)
		ctx := testContext(t)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := newClients(endpoint, hc)
				for range perWorker {
					_, _ = c.ddb.ListTables(ctx, &dynamodb.ListTablesInput{})
					_ = faults.Stats() // snapshots race with updates under -race
				}
			}()
		}
		wg.Wait()

		got := faults.Stats()
		wantCounts(t, "concurrent vs sequential", got.Counts, sequential.Requests, sequential.Forwarded, sequential.Faults)
		if got.Requests != workers*perWorker {
			t.Errorf("requests = %d, want %d", got.Requests, workers*perWorker)
		}
	})
}

func TestCloseWaitsForInFlightRequests(t *testing.T) {
	moto := mustMoto(t)
	faults := mustInjector(t, 0, faultproxy.Rule{Service: faultproxy.DynamoDB, Delay: 1, DelayDuration: 10 * time.Second})
	p, err := faultproxy.Start(moto, faults)
	if err != nil {
		t.Fatalf("start proxy: %v", err)
	}
	c := newClients(p.URL(), nil)
	ctx := testContext(t)

	done := make(chan error, 1)
	go func() {
		_, err := c.ddb.ListTables(ctx, &dynamodb.ListTablesInput{})
		done <- err
	}()
	for faults.Stats().Faults[faultproxy.FaultDelay] == 0 {
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
	if got := faults.Stats().Forwarded; got != 1 {
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
	eachRoute(t, func(t *testing.T, r route) {
		faults := mustInjector(t, 1, faultproxy.Rule{Service: faultproxy.DynamoDB, InternalError: 1})
		endpoint, hc := r.open(t, moto, faults)
		resp, err := hc.Get(endpoint + "/moto-api/")
		if err != nil {
			t.Fatalf("GET through the injector: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status = %d, want 200 from the upstream", resp.StatusCode)
		}
		s := faults.Stats()
		wantCounts(t, "total", s.Counts, 1, 1, nil)
		wantCounts(t, "unrecognised", s.ByOp[faultproxy.Op{}], 1, 1, nil)
	})
}
