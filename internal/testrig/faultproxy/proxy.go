package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxBody bounds request and response bodies the proxy buffers.
const maxBody = 16 << 20

// Config configures a Proxy.
type Config struct {
	// Upstream is the base URL requests are forwarded to, such as
	// "http://127.0.0.1:5000". Required.
	Upstream string
	// Seed makes the fault decisions reproducible.
	Seed int64
	// Rules are the initial fault rules; none means a transparent proxy.
	Rules []Rule
	// Addr is the address to listen on; default "127.0.0.1:0".
	Addr string
}

// Proxy is a running fault-injecting proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	seed      int64
	upstream  *url.URL
	listener  net.Listener
	server    *http.Server
	transport *http.Transport
	rules     atomic.Pointer[ruleSet]
	stats     statsTable

	closing   chan struct{} // closed when Close starts: cuts delays short
	handlers  sync.WaitGroup
	served    chan struct{} // closed when Serve has returned
	closeOnce sync.Once
	closeErr  error
}

// Start validates cfg, listens and serves until Close.
func Start(cfg Config) (*Proxy, error) {
	upstream, err := url.Parse(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("parse upstream %q: %w", cfg.Upstream, err)
	}
	if upstream.Scheme != "http" && upstream.Scheme != "https" || upstream.Host == "" {
		return nil, fmt.Errorf("upstream %q: want an http or https URL with a host", cfg.Upstream)
	}
	rules, err := newRuleSet(cfg.Rules)
	if err != nil {
		return nil, err
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	p := &Proxy{
		seed:     cfg.Seed,
		upstream: upstream,
		listener: ln,
		transport: &http.Transport{
			Proxy:               nil, // never route loopback traffic through an environment proxy
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     30 * time.Second,
		},
		closing: make(chan struct{}),
		served:  make(chan struct{}),
	}
	p.rules.Store(&rules)
	p.server = &http.Server{
		Handler:           http.HandlerFunc(p.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() {
		defer close(p.served)
		_ = p.server.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	return p, nil
}

// URL returns the proxy's base URL, for the SDK's BaseEndpoint.
func (p *Proxy) URL() string {
	return "http://" + p.listener.Addr().String()
}

// SetRules replaces the fault rules; requests already past their fault
// decision keep the old ones. On error the rules are left unchanged.
func (p *Proxy) SetRules(rules ...Rule) error {
	set, err := newRuleSet(rules)
	if err != nil {
		return err
	}
	p.rules.Store(&set)
	return nil
}

// Stats returns a snapshot of the counters since Start.
func (p *Proxy) Stats() Stats {
	return p.stats.snapshot()
}

// Close stops listening, cuts pending delays short and waits for the
// requests in flight to finish. Later calls return the first call's result.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		close(p.closing)
		if err := p.server.Shutdown(context.Background()); err != nil {
			p.closeErr = fmt.Errorf("shut down proxy: %w", err)
		}
		p.handlers.Wait() // including those whose connection was hijacked
		<-p.served
		p.transport.CloseIdleConnections()
	})
	return p.closeErr
}

// serveHTTP handles one request: draws its faults, then answers, drops or
// forwards it.
func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	p.handlers.Add(1)
	defer p.handlers.Done()

	op := opFromTarget(r.Header.Get("X-Amz-Target"))
	t := tally{total: &p.stats.total, op: p.stats.op(op)}
	t.request()
	seq := t.op.seq.Add(1) - 1
	rule := p.rules.Load().match(op)
	d := newDraws(p.seed, op, seq)
	uFault, uDelay := d.float(), d.float() // always both, so streams line up whatever the rates

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeProxyError(w, op.Service, fmt.Errorf("read request body: %w", err))
		return
	}

	if uDelay < rule.Delay {
		t.fault(FaultDelay, 1)
		if !p.wait(r.Context(), rule.DelayDuration) {
			return // the client gave up
		}
	}

	fault := rule.pick(uFault)
	switch fault {
	case FaultDropBeforeForward:
		t.fault(fault, 1)
		drop(w)
		return
	case FaultThrottle, FaultProvisionedThroughputExceeded, FaultInternalError:
		t.fault(fault, 1)
		e, ok := injectedError(op.Service, fault)
		if !ok {
			e = apiError{status: http.StatusInternalServerError, errorType: "InternalFailure"}
		}
		writeAPIError(w, op.Service, e, fault)
		return
	}

	var plan *entryPlan
	if fault == faultNone && op == putEvents && rule.FailEntry > 0 {
		plan, body, err = planPutEvents(body, rule.FailEntry, d)
		if err != nil {
			writeProxyError(w, op.Service, err)
			return
		}
		if plan != nil && plan.allFailed() {
			merged, err := plan.merge(nil)
			if err != nil {
				writeProxyError(w, op.Service, err)
				return
			}
			t.fault(FaultFailedEntry, int64(plan.nFail))
			writeJSON(w, op.Service, http.StatusOK, merged)
			return
		}
	}

	resp, respBody, err := p.forward(r, body)
	if err != nil {
		t.upstreamError()
		writeProxyError(w, op.Service, err)
		return
	}
	t.forwarded()

	if fault == FaultDropAfterForward {
		t.fault(fault, 1)
		drop(w)
		return
	}

	rewritten := false
	if plan != nil && resp.StatusCode == http.StatusOK {
		merged, err := plan.merge(respBody)
		if err != nil {
			writeProxyError(w, op.Service, err)
			return
		}
		t.fault(FaultFailedEntry, int64(plan.nFail))
		respBody, rewritten = merged, true
	}
	copyResponse(w, resp, respBody, rewritten)
}

// wait sleeps for d, cut short by Close; it returns false if the client went
// away meanwhile.
func (p *Proxy) wait(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-p.closing:
		return true
	case <-ctx.Done():
		return false
	}
}

// drop closes the client's connection without a response.
func drop(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeProxyError(w, "", errors.New("connection cannot be dropped: not HTTP/1"))
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return // already unusable; the server closes it
	}
	_ = conn.Close()
}

// hopHeaders are connection-level headers not passed through.
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// forward sends the request with body to the upstream and reads the whole
// response.
func (p *Proxy) forward(r *http.Request, body []byte) (*http.Response, []byte, error) {
	target := *p.upstream
	target.Path = strings.TrimSuffix(p.upstream.Path, "/") + r.URL.Path
	target.RawPath = ""
	target.RawQuery = r.URL.RawQuery
	out, err := http.NewRequestWithContext(r.Context(), r.Method, target.String(), bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("build upstream request: %w", err)
	}
	out.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.Header.Del("Content-Length")
	out.Header.Del("Accept-Encoding") // let the transport negotiate and decode compression itself
	out.ContentLength = int64(len(body))

	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		return nil, nil, fmt.Errorf("forward %s %s: %w", r.Method, target.Redacted(), err)
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

// copyResponse writes the upstream response with body (which may have been
// rewritten) to the client.
func copyResponse(w http.ResponseWriter, resp *http.Response, body []byte, rewritten bool) {
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = append([]string(nil), vs...)
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	h.Del("Content-Length")
	if rewritten {
		h.Del("X-Amz-Crc32") // the checksum was of the upstream's body
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body) // the client may be gone; nothing to do about it
}
