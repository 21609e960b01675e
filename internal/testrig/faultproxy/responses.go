package faultproxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
)

// apiError is an error response in the shape a JSON-protocol service sends.
type apiError struct {
	status     int
	errorType  string // value of __type, as the service writes it
	queryError string // X-Amzn-Query-Error header (SQS), if any
}

// contentType returns the JSON protocol media type of a service.
func contentType(svc Service) string {
	if svc == EventBridge {
		return "application/x-amz-json-1.1"
	}
	return "application/x-amz-json-1.0"
}

// injectedError returns the error response for fault f on service svc, and
// false when svc has no such response.
func injectedError(svc Service, f Fault) (apiError, bool) {
	switch svc {
	case DynamoDB:
		const ns = "com.amazonaws.dynamodb.v20120810#"
		switch f {
		case FaultThrottle:
			return apiError{status: http.StatusBadRequest, errorType: ns + "ThrottlingException"}, true
		case FaultProvisionedThroughputExceeded:
			return apiError{status: http.StatusBadRequest, errorType: ns + "ProvisionedThroughputExceededException"}, true
		case FaultInternalError:
			return apiError{status: http.StatusInternalServerError, errorType: ns + "InternalServerError"}, true
		}
	case EventBridge:
		switch f {
		case FaultThrottle:
			return apiError{status: http.StatusBadRequest, errorType: "ThrottlingException"}, true
		case FaultInternalError:
			return apiError{status: http.StatusInternalServerError, errorType: "InternalException"}, true
		}
	case SQS:
		const ns = "com.amazonaws.sqs#"
		switch f {
		case FaultThrottle:
			return apiError{status: http.StatusBadRequest, errorType: ns + "RequestThrottled", queryError: "RequestThrottled;Sender"}, true
		case FaultInternalError:
			return apiError{status: http.StatusInternalServerError, errorType: ns + "InternalError", queryError: "InternalError;Receiver"}, true
		}
	}
	return apiError{}, false
}

var requestIDs atomic.Uint64

// jsonResponse is a complete JSON-protocol response to r.
func jsonResponse(r *http.Request, svc Service, status int, body []byte) *http.Response {
	h := http.Header{}
	h.Set("Content-Type", contentType(svc))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Amzn-RequestId", fmt.Sprintf("faultproxy-%08d", requestIDs.Add(1)))
	return &http.Response{
		Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		Request: r,
	}
}

// response is e as the answer to r, with a message naming the fault.
func (e apiError) response(r *http.Request, svc Service, f Fault) *http.Response {
	body, _ := json.Marshal(struct { // a struct of strings always marshals
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{e.errorType, fmt.Sprintf("%s injected by faultproxy", f)})
	resp := jsonResponse(r, svc, e.status, body)
	if e.queryError != "" {
		resp.Header.Set("X-Amzn-Query-Error", e.queryError)
	}
	return resp
}
