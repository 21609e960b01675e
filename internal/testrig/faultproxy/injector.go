package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// maxBody bounds request and response bodies the injector buffers.
const maxBody = 16 << 20

// Config configures an Injector.
type Config struct {
	// Seed makes the fault decisions reproducible.
	Seed int64
	// Rules are the initial fault rules; none means no faults.
	Rules []Rule
	// Next sends on the requests that reach AWS; default: an http.Transport
	// of the injector's own.
	Next http.RoundTripper
}

// Injector is an http.RoundTripper that injects faults into the requests
// it sends on. Its methods are safe for concurrent use.
type Injector struct {
	seed  int64
	next  http.RoundTripper
	rules atomic.Pointer[ruleSet]
	stats statsTable
}

var _ http.RoundTripper = (*Injector)(nil)

// errDropped is what a dropped connection returns to the SDK, which wraps
// it in a send error, as it does a real connection's.
var errDropped = errors.New("connection dropped without a response (injected by faultproxy)")

// New validates cfg and returns the injector.
func New(cfg Config) (*Injector, error) {
	rules, err := newRuleSet(cfg.Rules)
	if err != nil {
		return nil, err
	}
	in := &Injector{seed: cfg.Seed, next: cfg.Next}
	if in.next == nil {
		in.next = &http.Transport{
			Proxy:               nil, // never route loopback traffic through an environment proxy
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     30 * time.Second,
		}
	}
	in.rules.Store(&rules)
	return in, nil
}

// Client returns an HTTP client sending through the injector, for
// aws.Config.HTTPClient.
func (in *Injector) Client() *http.Client { return &http.Client{Transport: in} }

// SetRules replaces the fault rules; requests already past their fault
// decision keep the old ones. On error the rules are left unchanged.
func (in *Injector) SetRules(rules ...Rule) error {
	set, err := newRuleSet(rules)
	if err != nil {
		return err
	}
	in.rules.Store(&set)
	return nil
}

// CloseIdleConnections closes the idle connections of the transport the
// injector sends on (what http.Client.CloseIdleConnections calls).
func (in *Injector) CloseIdleConnections() {
	if c, ok := in.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Stats returns a snapshot of the counters since New.
func (in *Injector) Stats() Stats {
	return in.stats.snapshot()
}

// RoundTrip draws the request's faults, then answers it, drops it or sends
// it on.
func (in *Injector) RoundTrip(r *http.Request) (*http.Response, error) {
	op := opFromTarget(r.Header.Get("X-Amz-Target"))
	t := tally{total: &in.stats.total, op: in.stats.op(op)}
	t.request()
	seq := t.op.seq.Add(1) - 1
	rule := in.rules.Load().match(op)
	d := newDraws(in.seed, op, seq)
	uFault, uDelay := d.float(), d.float() // always both, so streams line up whatever the rates

	body, err := readBody(r)
	if err != nil {
		return nil, err
	}

	if uDelay < rule.Delay {
		t.fault(FaultDelay, 1)
		if err := delay(r.Context(), rule.DelayDuration); err != nil {
			return nil, err // the client gave up
		}
	}

	fault := rule.pick(uFault)
	switch fault {
	case FaultDropBeforeForward:
		t.fault(fault, 1)
		return nil, errDropped
	case FaultThrottle, FaultProvisionedThroughputExceeded, FaultInternalError:
		t.fault(fault, 1)
		e, ok := injectedError(op.Service, fault)
		if !ok {
			e = apiError{status: http.StatusInternalServerError, errorType: "InternalFailure"}
		}
		return e.response(r, op.Service, fault), nil
	}

	var plan *entryPlan
	if fault == faultNone && op == putEvents && rule.FailEntry > 0 {
		if plan, body, err = planPutEvents(body, rule.FailEntry, d); err != nil {
			return nil, err
		}
		if plan != nil && plan.allFailed() {
			merged, err := plan.merge(nil)
			if err != nil {
				return nil, err
			}
			t.fault(FaultFailedEntry, int64(plan.nFail))
			return jsonResponse(r, op.Service, http.StatusOK, merged), nil
		}
	}

	resp, respBody, err := in.forward(r, body, plan != nil)
	if err != nil {
		t.upstreamError()
		return nil, err
	}
	t.forwarded()

	if fault == FaultDropAfterForward {
		t.fault(fault, 1)
		return nil, errDropped
	}

	if plan != nil && resp.StatusCode == http.StatusOK {
		merged, err := plan.merge(respBody)
		if err != nil {
			return nil, err
		}
		t.fault(FaultFailedEntry, int64(plan.nFail))
		respBody = merged
		resp.Header.Del("X-Amz-Crc32") // the checksum was of the upstream's body
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	resp.ContentLength = int64(len(respBody))
	resp.Header.Set("Content-Length", strconv.Itoa(len(respBody)))
	return resp, nil
}

// readBody reads and closes the request's body, as a RoundTripper must.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	defer r.Body.Close()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("request body larger than %d bytes", maxBody)
	}
	return body, nil
}

// delayCut is the context key of a channel whose closing cuts delays
// short: a Proxy closes it when it shuts down.
type delayCut struct{}

// delay waits for d, cut short by the request's delayCut channel; it
// returns the context's error if the client went away meanwhile.
func delay(ctx context.Context, d time.Duration) error {
	cut, _ := ctx.Value(delayCut{}).(<-chan struct{}) // nil: never cut short
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-cut:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// forward sends the request with body on and reads the whole response.
// With rewrite, the response must come uncompressed, to be rewritten.
func (in *Injector) forward(r *http.Request, body []byte, rewrite bool) (*http.Response, []byte, error) {
	out := r.Clone(r.Context())
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	out.ContentLength = int64(len(body))
	out.Header.Del("Content-Length")
	if rewrite {
		out.Header.Del("Accept-Encoding") // the transport negotiates and decodes compression itself
	}
	resp, err := in.next.RoundTrip(out)
	if err != nil {
		return nil, nil, fmt.Errorf("forward %s %s: %w", r.Method, r.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read upstream response: %w", err)
	}
	if len(respBody) > maxBody {
		return nil, nil, fmt.Errorf("upstream response larger than %d bytes", maxBody)
	}
	return resp, respBody, nil
}
