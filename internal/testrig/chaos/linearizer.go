package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"

	"decnet-attribution/internal/attribution"
)

// linearizer forwards requests to the AWS endpoint, lets one DynamoDB
// request at a time reach it, and keeps a journal of the observations each
// applied transaction stored, in the order the endpoint applied them.
//
// DynamoDB applies each conditional write and each transaction atomically
// (transactions are serialisable). moto's own server does not under
// concurrent requests: its TransactWriteItems copies every table it touches
// before applying the actions and, when the transaction is cancelled, puts
// the copies back, undoing whatever other requests wrote meanwhile, and
// conditions are checked and writes applied with no lock. devstack's
// launcher serialises DynamoDB requests inside moto; serialising them here
// as well keeps the harness sound against a moto without that fix, and is
// what makes the journal exact: requests pass one at a time, so the
// journal is the true order of application, including commits whose answer
// the fault proxy dropped afterwards. Everything before the endpoint (the
// SDK, the fault proxy, the function's concurrent units and instances)
// stays concurrent.
type linearizer struct {
	srv               *http.Server
	ln                net.Listener
	proxy             *httputil.ReverseProxy
	done              chan struct{}
	observationsTable string

	dynamoDB sync.Mutex // held for the whole of each DynamoDB request
	journal  []attribution.Observation
	bad      []error // undecodable journal entries
}

func startLinearizer(upstream, observationsTable string) (*linearizer, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("parse endpoint %q: %w", upstream, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	l := &linearizer{ln: ln, done: make(chan struct{}), observationsTable: observationsTable}
	l.proxy = httputil.NewSingleHostReverseProxy(u)
	l.proxy.Transport = &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}
	l.proxy.ErrorLog = log.New(io.Discard, "", 0)
	l.srv = &http.Server{Handler: l, ErrorLog: log.New(io.Discard, "", 0)}
	go func() {
		defer close(l.done)
		_ = l.srv.Serve(ln) // http.ErrServerClosed after close
	}()
	return l, nil
}

// URL is the endpoint to use instead of the upstream.
func (l *linearizer) URL() string { return "http://" + l.ln.Addr().String() }

func (l *linearizer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	if !strings.HasPrefix(target, "DynamoDB_") {
		l.proxy.ServeHTTP(w, r)
		return
	}
	l.dynamoDB.Lock()
	defer l.dynamoDB.Unlock()
	if target != "DynamoDB_20120810.TransactWriteItems" {
		l.proxy.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	l.proxy.ServeHTTP(rec, r)
	if rec.status == http.StatusOK {
		l.record(body)
	}
}

// record adds the observations an applied TransactWriteItems stored.
func (l *linearizer) record(body []byte) {
	var req struct {
		TransactItems []struct {
			Put *struct {
				TableName string
				Item      map[string]map[string]json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(body, &req); err != nil {
		l.bad = append(l.bad, fmt.Errorf("decode a transaction: %w", err))
		return
	}
	for _, it := range req.TransactItems {
		if it.Put == nil || it.Put.TableName != l.observationsTable {
			continue
		}
		var text string
		if err := json.Unmarshal(it.Put.Item["obs"]["S"], &text); err != nil {
			l.bad = append(l.bad, fmt.Errorf("observation item without its body: %w", err))
			continue
		}
		var o attribution.Observation
		if err := json.Unmarshal([]byte(text), &o); err != nil {
			l.bad = append(l.bad, fmt.Errorf("decode a stored observation: %w", err))
			continue
		}
		l.journal = append(l.journal, o)
	}
}

// applied returns the journal, and an error if some entry could not be
// read.
func (l *linearizer) applied() ([]attribution.Observation, error) {
	l.dynamoDB.Lock()
	defer l.dynamoDB.Unlock()
	if len(l.bad) > 0 {
		return nil, fmt.Errorf("journal of applied commits: %d unreadable entries, the first: %w", len(l.bad), l.bad[0])
	}
	return append([]attribution.Observation(nil), l.journal...), nil
}

func (l *linearizer) close() error {
	err := l.srv.Shutdown(context.Background())
	<-l.done
	return err
}

// statusRecorder notes the status of a response on its way through.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
