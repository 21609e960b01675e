package sqspoller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/aws/aws-lambda-go/events"
)

// Invoker runs the function for one batch.
//
// Invoke returns the function's response. A non-nil error means the
// invocation failed as a whole (the function returned an error, crashed or
// could not be reached); the mapping then deletes no message of the batch.
type Invoker interface {
	Invoke(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error)
}

var (
	_ Invoker = FuncInvoker(nil)
	_ Invoker = (*HTTPInvoker)(nil)
)

// FuncInvoker adapts a Go function with the signature of an SQS handler
// reporting batch item failures.
type FuncInvoker func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error)

// Invoke calls f.
func (f FuncInvoker) Invoke(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	return f(ctx, ev)
}

// DefaultFunctionName is the function name served by the Runtime Interface
// Emulator.
const DefaultFunctionName = "function"

// InvocationURL returns the Lambda Invoke URL of function under endpoint,
// e.g. InvocationURL("http://127.0.0.1:9000", DefaultFunctionName) for the
// Runtime Interface Emulator, or the function's logical ID for
// `sam local start-lambda`.
func InvocationURL(endpoint, function string) string {
	return strings.TrimRight(endpoint, "/") + "/2015-03-31/functions/" + url.PathEscape(function) + "/invocations"
}

// maxResponseBytes bounds the response read from an invocation endpoint
// (Lambda's synchronous response limit).
const maxResponseBytes = 6 << 20

// HTTPInvoker posts the event as JSON to a Lambda Invoke endpoint, such as
// the one served by the Runtime Interface Emulator or `sam local
// start-lambda`, and decodes the function's response.
type HTTPInvoker struct {
	// URL is the full invocation URL; see InvocationURL.
	URL string
	// Client sends the request; nil means http.DefaultClient.
	Client *http.Client
}

// FunctionError is a function error reported by the invocation endpoint:
// either a body carrying errorMessage/errorType or an X-Amz-Function-Error
// header.
type FunctionError struct {
	Type    string
	Message string
}

func (e *FunctionError) Error() string {
	switch {
	case e.Type == "":
		return "function error: " + e.Message
	case e.Message == "":
		return "function error: " + e.Type
	default:
		return "function error: " + e.Type + ": " + e.Message
	}
}

// ErrInvalidResponse reports a function response that is not a valid
// SQSEventResponse document.
var ErrInvalidResponse = errors.New("invalid function response")

// Invoke posts ev to h.URL. Transport failures, non-2xx statuses, function
// errors (as *FunctionError) and undecodable responses (wrapping
// ErrInvalidResponse) are returned as errors.
func (h *HTTPInvoker) Invoke(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	payload, err := json.Marshal(ev)
	if err != nil {
		return events.SQSEventResponse{}, fmt.Errorf("encode event: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(payload))
	if err != nil {
		return events.SQSEventResponse{}, fmt.Errorf("invoke %s: %w", h.URL, err)
	}
	req.Header.Set("Content-Type", "application/json")
	client := h.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return events.SQSEventResponse{}, fmt.Errorf("invoke %s: %w", h.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return events.SQSEventResponse{}, fmt.Errorf("invoke %s: read response: %w", h.URL, err)
	}
	if len(body) > maxResponseBytes {
		return events.SQSEventResponse{}, fmt.Errorf("invoke %s: response larger than %d bytes: %w", h.URL, maxResponseBytes, ErrInvalidResponse)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return events.SQSEventResponse{}, fmt.Errorf("invoke %s: status %d: %s", h.URL, resp.StatusCode, snippet(body))
	}
	out, err := decodeResponse(body, resp.Header.Get("X-Amz-Function-Error"))
	if err != nil {
		return events.SQSEventResponse{}, fmt.Errorf("invoke %s: %w", h.URL, err)
	}
	return out, nil
}

// decodeResponse interprets a function's response payload. functionError is
// the value of the X-Amz-Function-Error header, if any.
func decodeResponse(body []byte, functionError string) (events.SQSEventResponse, error) {
	body = bytes.TrimSpace(body)
	isNull := len(body) == 0 || string(body) == "null"
	if functionError != "" && (isNull || body[0] != '{') {
		return events.SQSEventResponse{}, &FunctionError{Type: functionError, Message: string(body)}
	}
	if isNull {
		return events.SQSEventResponse{}, nil
	}
	if body[0] != '{' {
		return events.SQSEventResponse{}, fmt.Errorf("%w: not a JSON object: %s", ErrInvalidResponse, snippet(body))
	}
	var doc struct {
		ErrorMessage      *string                      `json:"errorMessage"`
		ErrorType         *string                      `json:"errorType"`
		BatchItemFailures []events.SQSBatchItemFailure `json:"batchItemFailures"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		if functionError != "" {
			return events.SQSEventResponse{}, &FunctionError{Type: functionError, Message: string(body)}
		}
		return events.SQSEventResponse{}, fmt.Errorf("%w: %v", ErrInvalidResponse, err)
	}
	if functionError != "" || doc.ErrorMessage != nil || doc.ErrorType != nil {
		fe := &FunctionError{Type: functionError}
		if doc.ErrorType != nil {
			fe.Type = *doc.ErrorType
		}
		if doc.ErrorMessage != nil {
			fe.Message = *doc.ErrorMessage
		}
		return events.SQSEventResponse{}, fe
	}
	return events.SQSEventResponse{BatchItemFailures: doc.BatchItemFailures}, nil
}

func snippet(b []byte) string {
	const n = 256
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
