package faultproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Proxy serves an Injector on loopback in front of an upstream endpoint,
// for a process that cannot be handed an HTTP client: point its AWS
// endpoint at URL.
type Proxy struct {
	listener  net.Listener
	server    *http.Server
	closing   chan struct{} // closed when Close starts: cuts delays short
	served    chan struct{} // closed when Serve has returned
	closeOnce sync.Once
	closeErr  error
}

// Start listens on a free loopback port and serves until Close, sending
// every request through faults to upstream (such as
// "http://127.0.0.1:5000").
func Start(upstream string, faults *Injector) (*Proxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("parse upstream %q: %w", upstream, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("upstream %q: want an http or https URL with a host", upstream)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	p := &Proxy{listener: ln, closing: make(chan struct{}), served: make(chan struct{})}
	var cut <-chan struct{} = p.closing
	p.server = &http.Server{
		Handler: &httputil.ReverseProxy{
			Rewrite:      func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
			Transport:    faults,
			ErrorHandler: answerError,
			ErrorLog:     log.New(io.Discard, "", 0),
		},
		BaseContext:       func(net.Listener) context.Context { return context.WithValue(context.Background(), delayCut{}, cut) },
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() {
		defer close(p.served)
		_ = p.server.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	return p, nil
}

// URL returns the proxy's base URL, for the AWS endpoint.
func (p *Proxy) URL() string {
	return "http://" + p.listener.Addr().String()
}

// Close stops listening, cuts pending delays short and waits for the
// requests in flight to finish. Later calls return the first call's result.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		close(p.closing)
		if err := p.server.Shutdown(context.Background()); err != nil {
			p.closeErr = fmt.Errorf("shut down proxy: %w", err)
		}
		<-p.served
	})
	return p.closeErr
}

// answerError closes the client's connection without a response for a
// dropped request, and otherwise answers 502 for a failure of the proxy
// itself, such as an unreachable upstream.
func answerError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errDropped) {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
			}
			return
		}
		err = errors.New("connection cannot be dropped: not HTTP/1")
	}
	if r.Context().Err() != nil {
		return // the client went away
	}
	body, _ := json.Marshal(struct { // a struct of strings always marshals
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{"FaultProxyError", err.Error()})
	svc := opFromTarget(r.Header.Get("X-Amz-Target")).Service
	w.Header().Set("Content-Type", contentType(svc))
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusBadGateway)
	_, _ = w.Write(body) // the client may be gone; nothing to do about it
}
