package eventbus_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/eventbus"
)

// newSDKClient returns a real EventBridge client for endpoint, with the
// SDK's default retryer.
func newSDKClient(endpoint string) *eventbridge.Client {
	return eventbridge.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}, func(o *eventbridge.Options) {
		o.BaseEndpoint = aws.String(endpoint)
	})
}

// TestPublishBoundsSDKRetries checks, with the real SDK client, that
// Config.MaxAttempts bounds the requests made for a failing call: the
// SDK's retryer does not multiply them.
func TestPublishBoundsSDKRetries(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{name: "server error", status: http.StatusInternalServerError, body: `{"__type":"InternalException","message":"boom"}`},
		{name: "throttled", status: http.StatusBadRequest, body: `{"__type":"ThrottlingException","message":"Rate exceeded"}`},
		{name: "unavailable", status: http.StatusServiceUnavailable, body: `{"__type":"ServiceUnavailable"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var requests atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/x-amz-json-1.1")
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()

			pub, err := eventbus.New(newSDKClient(srv.URL), eventbus.Config{
				BusName:     testBus,
				MaxAttempts: 2,
				BaseDelay:   time.Millisecond,
				MaxDelay:    time.Millisecond,
				Logger:      slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			err = pub.Publish(context.Background(), mustEvents(t, 3, 0))
			var perr *attribution.PublishError
			if err == nil || errors.As(err, &perr) {
				t.Fatalf("Publish() = %v, want a plain error", err)
			}
			if got := requests.Load(); got != 2 {
				t.Errorf("%d requests, want 2 (MaxAttempts)", got)
			}
		})
	}
}

func TestEntrySize(t *testing.T) {
	stamp := time.Unix(1714054175, 0)
	tests := []struct {
		name  string
		entry types.PutEventsRequestEntry
		want  int
	}{
		{name: "empty", want: 0},
		{
			name: "source, detail type and detail",
			entry: types.PutEventsRequestEntry{
				Source: aws.String("abc"), DetailType: aws.String("de"), Detail: aws.String(`{"k":"é"}`),
				EventBusName: aws.String("not counted"),
			},
			want: 3 + 2 + 10,
		},
		{
			name:  "time and resources",
			entry: types.PutEventsRequestEntry{Source: aws.String("a"), Time: &stamp, Resources: []string{"r1", "res2"}},
			want:  1 + 14 + 2 + 4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := eventbus.EntrySize(tt.entry); got != tt.want {
				t.Errorf("EntrySize() = %d, want %d", got, tt.want)
			}
		})
	}
}
