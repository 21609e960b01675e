package sqspoller_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"decnet-attribution/internal/testrig/sqspoller"
)

const invocationPath = "/2015-03-31/functions/function/invocations"

// newEmulator serves the Runtime Interface Emulator's invocation endpoint,
// answering each decoded event with respond's status and body.
func newEmulator(tb testing.TB, respond func(ev events.SQSEvent) (int, string)) *httptest.Server {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != invocationPath {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		var ev events.SQSEvent
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		status, body := respond(ev)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	tb.Cleanup(srv.Close)
	return srv
}

func sampleEvent() events.SQSEvent {
	v := "typed"
	return events.SQSEvent{Records: []events.SQSMessage{{
		MessageId:     "b1",
		ReceiptHandle: "rh",
		Body:          `{"id":"obs-1"}`,
		Md5OfBody:     "x",
		Attributes:    map[string]string{"ApproximateReceiveCount": "1"},
		MessageAttributes: map[string]events.SQSMessageAttribute{
			"kind": {StringValue: &v, DataType: "String", StringListValues: []string{}, BinaryListValues: [][]byte{}},
		},
		EventSourceARN: "arn:aws:sqs:us-east-1:123456789012:q",
		EventSource:    "aws:sqs",
		AWSRegion:      "us-east-1",
	}}}
}

func TestHTTPInvoker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		status      int
		header      string // X-Amz-Function-Error
		body        string
		want        events.SQSEventResponse
		wantErr     bool
		wantFuncErr *sqspoller.FunctionError
		wantInvalid bool
	}{
		{name: "partial failures", status: 200, body: `{"batchItemFailures":[{"itemIdentifier":"b1"}]}`,
			want: events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{{ItemIdentifier: "b1"}}}},
		{name: "empty failures", status: 200, body: `{"batchItemFailures":[]}`, want: events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}},
		{name: "null response", status: 200, body: "null"},
		{name: "empty response", status: 200, body: ""},
		{name: "other fields ignored", status: 200, body: `{"processed":3}`},
		{name: "function error body", status: 200, body: `{"errorMessage":"boom","errorType":"errorString"}`,
			wantErr: true, wantFuncErr: &sqspoller.FunctionError{Type: "errorString", Message: "boom"}},
		{name: "function error header", status: 200, header: "Unhandled", body: `{"errorMessage":"timed out"}`,
			wantErr: true, wantFuncErr: &sqspoller.FunctionError{Type: "Unhandled", Message: "timed out"}},
		{name: "function error header without body", status: 200, header: "Unhandled",
			wantErr: true, wantFuncErr: &sqspoller.FunctionError{Type: "Unhandled"}},
		{name: "server error", status: 502, body: "bad gateway", wantErr: true},
		{name: "invalid JSON", status: 200, body: `{"batchItemFailures":`, wantErr: true, wantInvalid: true},
		{name: "not an object", status: 200, body: `"done"`, wantErr: true, wantInvalid: true},
		{name: "failures of the wrong type", status: 200, body: `{"batchItemFailures":"b1"}`, wantErr: true, wantInvalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sent := sampleEvent()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != invocationPath || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("request %s %s (Content-Type %q)", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
				}
				var got events.SQSEvent
				if err := json.NewDecoder(r.Body).Decode(&got); err != nil || !reflect.DeepEqual(got, sent) {
					t.Errorf("posted event %+v (%v), want %+v", got, err, sent)
				}
				if tt.header != "" {
					w.Header().Set("X-Amz-Function-Error", tt.header)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()

			inv := &sqspoller.HTTPInvoker{URL: sqspoller.InvocationURL(srv.URL+"/", sqspoller.DefaultFunctionName)}
			got, err := inv.Invoke(context.Background(), sent)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Invoke error = %v, want error: %v", err, tt.wantErr)
			}
			if tt.wantFuncErr != nil {
				var fe *sqspoller.FunctionError
				if !errors.As(err, &fe) || *fe != *tt.wantFuncErr {
					t.Errorf("Invoke error = %v, want %+v", err, tt.wantFuncErr)
				}
			}
			if errors.Is(err, sqspoller.ErrInvalidResponse) != tt.wantInvalid {
				t.Errorf("Invoke error = %v, want ErrInvalidResponse: %v", err, tt.wantInvalid)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Invoke = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestHTTPInvokerUnreachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := sqspoller.InvocationURL(srv.URL, sqspoller.DefaultFunctionName)
	srv.Close()
	if _, err := (&sqspoller.HTTPInvoker{URL: url}).Invoke(context.Background(), sampleEvent()); err == nil {
		t.Fatal("Invoke on a closed server succeeded")
	}
}

func TestInvocationURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ endpoint, function, want string }{
		{"http://127.0.0.1:9000", sqspoller.DefaultFunctionName, "http://127.0.0.1:9000/2015-03-31/functions/function/invocations"},
		{"http://127.0.0.1:3001/", "AttributionFunction", "http://127.0.0.1:3001/2015-03-31/functions/AttributionFunction/invocations"},
	}
	for _, tt := range tests {
		if got := sqspoller.InvocationURL(tt.endpoint, tt.function); got != tt.want {
			t.Errorf("InvocationURL(%q, %q) = %q, want %q", tt.endpoint, tt.function, got, tt.want)
		}
	}
}
