package decnetbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"

	"decnet-attribution/internal/decnetbus"
	"decnet-attribution/internal/testrig/busrig"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, topic string
		want           bool
	}{
		{"attacker.observation.>", "attacker.observation.motor.input_modality", true},
		{"attacker.observation.>", "attacker.observation.x", true},
		{"attacker.observation.>", "attacker.observation", false},
		{"attacker.>", "attacker", false},
		{">", "a", true},
		{">", "a.b.c", true},
		{"attacker.*", "attacker.observed", true},
		{"attacker.*", "attacker.session.ended", false},
		{"attacker.*.ended", "attacker.session.ended", true},
		{"*.*", "a.b", true},
		{"*", "", false},
		{"a.*", "a.", false},
		{"a.*.c", "a..c", false},
		{"identity.>", "identity.formed", true},
		{"identity.>", "identityx.formed", false},
		{"a.b", "a.b", true},
		{"a.b", "a.b.c", false},
		{"a.b.c", "a.b", false},
		{"a.>.c", "a.b.c", true}, // ">" ends the match wherever it stands
	}
	for _, tt := range tests {
		if got := decnetbus.Match(tt.pattern, tt.topic); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.topic, got, tt.want)
		}
	}
}

// collector gathers the events a client hands over.
type collector struct {
	mu     sync.Mutex
	topics []string
	bodies []decnetbus.Envelope
}

func (c *collector) handle(ev decnetbus.Event) {
	var env decnetbus.Envelope
	_ = json.Unmarshal(ev.Body, &env)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.topics = append(c.topics, ev.Topic)
	c.bodies = append(c.bodies, env)
}

func (c *collector) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.topics)
}

func runClient(t *testing.T, c *decnetbus.Client, col *collector) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, col.handle) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func TestWildcardSubscriptions(t *testing.T) {
	path := socketPath(t)
	srv, err := busrig.Listen(path, busrig.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	col := &collector{}
	sub := &decnetbus.Client{Path: path, Name: "test-sub", Patterns: []string{"attacker.observation.>", "identity.*", "system.*.health"}}
	stop := runClient(t, sub, col)
	defer stop()
	eventually(t, "subscriptions", func() bool { return srv.Subscribers("identity.formed") == 1 })

	pub := &decnetbus.Client{Path: path, Name: "test-pub"}
	pubCol := &collector{}
	stopPub := runClient(t, pub, pubCol)
	defer stopPub()
	eventually(t, "publisher connected", pub.Connected)

	topics := []string{
		"attacker.observation.motor.input_modality", // >
		"attacker.observation",                      // > needs a token
		"attacker.observed",
		"identity.formed",             // *
		"identity.observation.linked", // * is one token
		"system.profiler.health",      // middle *
		"system.health",
		"attacker.observation.toolchain.c2.beacon_interval_ms",
		"done.marker",
	}
	for _, topic := range topics {
		if err := pub.Publish(topic, "t", json.RawMessage(`{"topic":"`+topic+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"attacker.observation.motor.input_modality",
		"identity.formed",
		"system.profiler.health",
		"attacker.observation.toolchain.c2.beacon_interval_ms",
	}
	eventually(t, "deliveries", func() bool { return len(col.got()) >= len(want) })
	if got := col.got(); !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	// The envelope as the server stamps it.
	env := col.bodies[0]
	if env.V != 1 || len(env.ID) != 32 || env.Topic != want[0] || env.Type != "t" || env.TS <= 0 || string(env.Payload) != `{"topic":"`+want[0]+`"}` {
		t.Errorf("envelope = %+v", env)
	}
	if len(pubCol.got()) != 0 {
		t.Errorf("the publisher heard events: %v", pubCol.got())
	}
}

func TestReconnectAfterServerRestart(t *testing.T) {
	path := socketPath(t)
	srv, err := busrig.Listen(path, busrig.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	col := &collector{}
	c := &decnetbus.Client{Path: path, Patterns: []string{"a.>"}, MinBackoff: 10 * 1e6, MaxBackoff: 200 * 1e6}
	stop := runClient(t, c, col)
	defer stop()
	eventually(t, "first subscription", func() bool { return srv.Subscribers("a.b") == 1 })
	if err := srv.Publish("a.b", "", json.RawMessage(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "first event", func() bool { return len(col.got()) == 1 })

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "disconnect noticed", func() bool { return !c.Connected() })
	if err := c.Publish("a.c", "", nil); !errors.Is(err, decnetbus.ErrNotConnected) {
		t.Errorf("Publish while down: %v, want ErrNotConnected", err)
	}

	srv2, err := busrig.Listen(path, busrig.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	eventually(t, "subscribed again", func() bool { return srv2.Subscribers("a.b") == 1 })
	if err := srv2.Publish("a.b", "", json.RawMessage(`{"n":2}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "event after restart", func() bool { return len(col.got()) == 2 })
	if n := c.Connects(); n != 2 {
		t.Errorf("connects = %d, want 2", n)
	}
}

// A subscriber that does not read loses the oldest events, and the server
// counts them.
func TestSlowSubscriberLosesOldest(t *testing.T) {
	path := socketPath(t)
	srv, err := busrig.Listen(path, busrig.ServerOptions{OutboundQueue: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	block := make(chan struct{})
	col := &collector{}
	c := &decnetbus.Client{Path: path, Patterns: []string{">"}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx, func(ev decnetbus.Event) { <-block; col.handle(ev) })
	}()
	eventually(t, "subscription", func() bool { return srv.Subscribers("x") == 1 })
	for range 2000 {
		_ = srv.Publish("x", "", json.RawMessage(`{"n":1}`))
	}
	if srv.Stats().Dropped == 0 {
		t.Errorf("no event dropped for a subscriber that does not read")
	}
	close(block)
	cancel()
	<-done
}
