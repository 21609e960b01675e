package faultproxy

import (
	"encoding/json"
	"fmt"
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

// writeJSON writes a complete JSON-protocol response.
func writeJSON(w http.ResponseWriter, svc Service, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType(svc))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Amzn-RequestId", fmt.Sprintf("faultproxy-%08d", requestIDs.Add(1)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // the client may be gone; nothing to do about it
}

// writeAPIError writes e with a message naming the fault.
func writeAPIError(w http.ResponseWriter, svc Service, e apiError, f Fault) {
	body, _ := json.Marshal(struct { // a struct of strings always marshals
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{e.errorType, fmt.Sprintf("%s injected by faultproxy", f)})
	if e.queryError != "" {
		w.Header().Set("X-Amzn-Query-Error", e.queryError)
	}
	writeJSON(w, svc, e.status, body)
}

// writeProxyError answers 502 for a failure of the proxy itself, such as an
// unreachable upstream.
func writeProxyError(w http.ResponseWriter, svc Service, err error) {
	body, _ := json.Marshal(struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{"FaultProxyError", err.Error()})
	writeJSON(w, svc, http.StatusBadGateway, body)
}
