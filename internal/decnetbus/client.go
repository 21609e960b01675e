package decnetbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Default reconnect backoff of a Client.
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
)

// ErrNotConnected is returned by Publish while the client has no
// connection.
var ErrNotConnected = errors.New("not connected to the bus")

// SystemRunDir is where a system-wide DECNET keeps its bus socket.
const SystemRunDir = "/run/decnet"

// SocketPath resolves the bus socket as DECNET does: flag, else
// $DECNET_BUS_SOCKET, else bus.sock in runDir (SystemRunDir) when that
// directory exists, else ~/.decnet/bus.sock under home.
func SocketPath(flag string, lookup func(string) (string, bool), runDir, home string) string {
	if flag != "" {
		return flag
	}
	if v, _ := lookup("DECNET_BUS_SOCKET"); v != "" {
		return v
	}
	if fi, err := os.Stat(runDir); err == nil && fi.IsDir() {
		return filepath.Join(runDir, "bus.sock")
	}
	return filepath.Join(home, ".decnet", "bus.sock")
}

// Client is a connection to the bus that comes back: Run connects, says
// HELLO, subscribes to Patterns and hands every EVT to a handler; when the
// server goes away it reconnects with backoff and subscribes again.
type Client struct {
	Path     string
	Name     string   // sent with HELLO
	Patterns []string // subscribed on every connection
	// MinBackoff and MaxBackoff bound the wait between connection
	// attempts (doubling, with jitter); zero means the defaults.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
	// OnConnect, when set, is called after each (re)subscription.
	OnConnect func()

	mu        sync.Mutex // guards conn and writes on it
	conn      net.Conn
	connected atomic.Bool
	connects  atomic.Int64
}

// Connected reports whether the client holds a connection now.
func (c *Client) Connected() bool { return c.connected.Load() }

// Connects counts the connections made so far.
func (c *Client) Connects() int64 { return c.connects.Load() }

// Run keeps a connection until ctx ends, calling handle for every EVT in
// the order read. handle runs on the reading goroutine: while it blocks,
// nothing is read (the server then drops the oldest of what waits for us).
// On return Run says BYE and closes the connection.
func (c *Client) Run(ctx context.Context, handle func(Event)) error {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	minB, maxB := c.MinBackoff, c.MaxBackoff
	if minB <= 0 {
		minB = DefaultMinBackoff
	}
	if maxB < minB {
		maxB = max(DefaultMaxBackoff, minB)
	}
	backoff := minB
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return nil
		}
		conn, err := c.dial(ctx)
		if err == nil {
			backoff = minB
			c.connects.Add(1)
			log.Info("bus connected", "socket", c.Path, "patterns", c.Patterns)
			err = c.serve(ctx, conn, handle)
			c.drop(conn)
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("bus connection lost; reconnecting", "socket", c.Path, "error", err)
		} else if attempt == 0 || backoff >= maxB {
			log.Warn("bus not reachable; retrying", "socket", c.Path, "error", err, "retry_in", backoff.String())
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(maxB, backoff*2)
	}
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return nil, err
	}
	name := c.Name
	if name == "" {
		name = fmt.Sprintf("decnet-attribution[%d]", os.Getpid())
	}
	frames := []Frame{{Verb: VerbHello, Args: name}}
	for _, p := range c.Patterns {
		frames = append(frames, Frame{Verb: VerbSub, Args: p})
	}
	for _, f := range frames {
		if err := writeFrame(conn, f); err != nil {
			conn.Close()
			return nil, fmt.Errorf("%s %s: %w", f.Verb, f.Args, err)
		}
	}
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	c.connected.Store(true)
	if c.OnConnect != nil {
		c.OnConnect()
	}
	return conn, nil
}

func writeFrame(conn net.Conn, f Frame) error {
	b, err := Encode(f)
	if err != nil {
		return err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Write(b)
	return err
}

// serve reads frames until the connection fails, the server says BYE or
// ctx ends.
func (c *Client) serve(ctx context.Context, conn net.Conn, handle func(Event)) error {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		_ = writeFrame(conn, Frame{Verb: VerbBye})
		_ = conn.Close()
	})
	defer stop()
	r := NewReader(conn)
	for {
		f, err := r.ReadFrame()
		if err != nil {
			return err
		}
		switch f.Verb {
		case VerbEvt:
			if f.Args == "" {
				return protocolErrorf("EVT without a topic")
			}
			handle(Event{Topic: f.Args, Body: f.Body})
		case VerbBye:
			return errors.New("the server said BYE")
		default:
			// A server sends only EVT and BYE; other verbs are ignored, as
			// DECNET's own client does.
			c.logger().Warn("unexpected frame from the bus server", "verb", f.Verb)
		}
	}
}

func (c *Client) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

func (c *Client) drop(conn net.Conn) {
	c.mu.Lock()
	if c.conn == conn {
		c.conn = nil
	}
	c.mu.Unlock()
	c.connected.Store(false)
	_ = conn.Close()
}

// Publish sends a PUB frame carrying a fresh envelope of topic, typ and
// payload on the current connection. A nil error means the frame was
// written to the socket: the protocol has no acknowledgement beyond that.
func (c *Client) Publish(topic, typ string, payload json.RawMessage) error {
	body, err := json.Marshal(NewEnvelope(topic, typ, payload))
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return ErrNotConnected
	}
	if err := writeFrame(c.conn, Frame{Verb: VerbPub, Args: topic, Body: body}); err != nil {
		// A write that failed may have been partial: the stream is no
		// longer framed, so the connection goes.
		_ = c.conn.Close()
		return err
	}
	return nil
}
