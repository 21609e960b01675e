// Package busrig is the test rig's stand-in for DECNET's bus: a server
// speaking DECNET's protocol on a Unix socket (as DECNET's own behaves:
// no replies, a malformed frame closes the connection, a slow subscriber
// loses its oldest events, a publisher does not hear itself) and a
// publisher of realistic observation streams. It serves tests and
// `make run`; a DECNET host runs DECNET's own server.
package busrig

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"decnet-attribution/internal/decnetbus"
)

// DefaultOutboundQueue is how many frames wait for one subscriber before
// the oldest are dropped (DECNET's figure).
const DefaultOutboundQueue = 1024

// Server is a bus server on a Unix socket.
type Server struct {
	path     string
	ln       net.Listener
	log      *slog.Logger
	queueLen int

	mu    sync.Mutex
	conns map[*conn]bool
	wg    sync.WaitGroup

	published atomic.Int64 // PUB frames fanned out (and server-side publishes)
	delivered atomic.Int64 // EVT frames written
	dropped   atomic.Int64 // EVT frames dropped for slow subscribers
	rejected  atomic.Int64 // connections closed for a malformed frame
}

// ServerOptions tune a Server.
type ServerOptions struct {
	Logger *slog.Logger
	// OutboundQueue is the per-subscriber queue length; 0 means
	// DefaultOutboundQueue.
	OutboundQueue int
}

// Listen removes a stale socket at path and serves on it.
func Listen(path string, opts ServerOptions) (*Server, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	_ = os.Chmod(path, 0o660)
	s := &Server{path: path, ln: ln, log: opts.Logger, queueLen: opts.OutboundQueue, conns: map[*conn]bool{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.queueLen <= 0 {
		s.queueLen = DefaultOutboundQueue
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// ServerStats counts what a server did.
type ServerStats struct {
	Published, Delivered, Dropped, Rejected int64
	Connections                             int
}

// Stats returns the counters.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	return ServerStats{Published: s.published.Load(), Delivered: s.delivered.Load(), Dropped: s.dropped.Load(), Rejected: s.rejected.Load(), Connections: n}
}

// Subscribers returns how many connections have at least one pattern
// matching topic.
func (s *Server) Subscribers(topic string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		if c.matches(topic) {
			n++
		}
	}
	return n
}

// Close stops accepting, closes every connection and removes the socket.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	_ = os.Remove(s.path)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		c := &conn{nc: nc, patterns: map[string]bool{}, out: make(chan []byte, s.queueLen), done: make(chan struct{}), peer: "<unknown>"}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(2)
		go s.write(c)
		go s.read(c)
	}
}

// Publish fans out an event published by the server itself.
func (s *Server) Publish(topic, typ string, payload json.RawMessage) error {
	return s.fanout(nil, decnetbus.NewEnvelope(topic, typ, payload))
}

func (s *Server) read(c *conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.close()
	}()
	r := decnetbus.NewReader(c.nc)
	for {
		f, err := r.ReadFrame()
		if err != nil {
			if decnetbus.IsProtocolError(err) {
				s.rejected.Add(1)
				s.log.Warn("bus server: protocol error; closing", "peer", c.peer, "error", err)
			}
			return
		}
		if err := s.dispatch(c, f); err != nil {
			s.rejected.Add(1)
			s.log.Warn("bus server: protocol error; closing", "peer", c.peer, "error", err)
			return
		}
		if f.Verb == decnetbus.VerbBye {
			return
		}
	}
}

func (s *Server) dispatch(c *conn, f decnetbus.Frame) error {
	switch f.Verb {
	case decnetbus.VerbHello:
		if f.Args != "" {
			c.peer = f.Args
		}
	case decnetbus.VerbSub:
		if f.Args == "" {
			return &decnetbus.ProtocolError{Reason: "SUB without a pattern"}
		}
		s.mu.Lock()
		c.patterns[f.Args] = true
		s.mu.Unlock()
	case decnetbus.VerbUnsub:
		s.mu.Lock()
		delete(c.patterns, f.Args)
		s.mu.Unlock()
	case decnetbus.VerbPub:
		if f.Args == "" {
			return &decnetbus.ProtocolError{Reason: "PUB without a topic"}
		}
		body, err := decnetbus.DecodeObject(f.Body)
		if err != nil {
			return err
		}
		// The server keeps the publisher's type and payload and stamps a
		// new id and time, as DECNET's does.
		var typ string
		_ = json.Unmarshal(body["type"], &typ)
		payload := body["payload"]
		if string(payload) == "null" || len(payload) == 0 {
			payload = json.RawMessage("{}")
		}
		return s.fanout(c, decnetbus.NewEnvelope(f.Args, typ, payload))
	case decnetbus.VerbBye:
	default:
		return &decnetbus.ProtocolError{Reason: "unexpected verb " + f.Verb + " from a client"}
	}
	return nil
}

func (s *Server) fanout(origin *conn, env decnetbus.Envelope) error {
	body, err := json.Marshal(env)
	if err != nil {
		return err
	}
	frame, err := decnetbus.Encode(decnetbus.Frame{Verb: decnetbus.VerbEvt, Args: env.Topic, Body: body})
	if err != nil {
		s.log.Warn("bus server: cannot encode EVT", "topic", env.Topic, "error", err)
		return nil
	}
	s.published.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c == origin || !c.matches(env.Topic) {
			continue
		}
		for {
			select {
			case c.out <- frame:
			default:
				select {
				case <-c.out:
					s.dropped.Add(1)
				default:
				}
				continue
			}
			break
		}
	}
	return nil
}

func (s *Server) write(c *conn) {
	defer s.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case b := <-c.out:
			if _, err := c.nc.Write(b); err != nil {
				c.close()
				return
			}
			s.delivered.Add(1)
		}
	}
}

type conn struct {
	nc       net.Conn
	peer     string
	patterns map[string]bool // guarded by Server.mu
	out      chan []byte
	once     sync.Once
	done     chan struct{}
}

func (c *conn) matches(topic string) bool {
	for p := range c.patterns {
		if decnetbus.Match(p, topic) {
			return true
		}
	}
	return false
}

func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.nc.Close()
	})
}
