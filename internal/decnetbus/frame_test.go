package decnetbus_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"decnet-attribution/internal/decnetbus"
	"decnet-attribution/internal/testrig/busrig"
)

func raw(header string, body []byte) []byte {
	b := []byte(header)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

func rawLen(header string, n uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte(header), n)
}

// objectOf returns a JSON object of exactly n bytes.
func objectOf(n int) []byte {
	const frame = `{"p":""}`
	return []byte(`{"p":"` + strings.Repeat("x", n-len(frame)) + `"}`)
}

func TestEncodeLimits(t *testing.T) {
	topicFor := func(headerLen int) string { // "PUB " + topic + "\n"
		return strings.Repeat("a", headerLen-len("PUB \n"))
	}
	tests := []struct {
		name  string
		frame decnetbus.Frame
		ok    bool
	}{
		{"header at the limit", decnetbus.Frame{Verb: "PUB", Args: topicFor(decnetbus.MaxHeaderBytes)}, true},
		{"header one past the limit", decnetbus.Frame{Verb: "PUB", Args: topicFor(decnetbus.MaxHeaderBytes + 1)}, false},
		{"body at the limit", decnetbus.Frame{Verb: "PUB", Args: "t", Body: objectOf(decnetbus.MaxBodyBytes)}, true},
		{"body one past the limit", decnetbus.Frame{Verb: "PUB", Args: "t", Body: objectOf(decnetbus.MaxBodyBytes + 1)}, false},
		{"empty body", decnetbus.Frame{Verb: "BYE"}, true},
		{"unknown verb", decnetbus.Frame{Verb: "PING"}, false},
		{"newline in args", decnetbus.Frame{Verb: "SUB", Args: "a\nb"}, false},
		{"non-ASCII args", decnetbus.Frame{Verb: "SUB", Args: "tópico"}, false},
		{"body not an object", decnetbus.Frame{Verb: "PUB", Args: "t", Body: []byte(`[1]`)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := decnetbus.Encode(tt.frame)
			if (err == nil) != tt.ok {
				t.Fatalf("Encode error = %v, want ok=%v", err, tt.ok)
			}
			if err != nil {
				if !decnetbus.IsProtocolError(err) {
					t.Errorf("error %v is not a ProtocolError", err)
				}
				return
			}
			got, err := decnetbus.NewReader(bytes.NewReader(b)).ReadFrame()
			if err != nil {
				t.Fatalf("read back: %v", err)
			}
			if got.Verb != tt.frame.Verb || got.Args != tt.frame.Args || !bytes.Equal(got.Body, tt.frame.Body) {
				t.Errorf("read back %q %q (%d bytes), want %q %q (%d bytes)", got.Verb, got.Args, len(got.Body), tt.frame.Verb, tt.frame.Args, len(tt.frame.Body))
			}
		})
	}
}

func TestReadFrameCases(t *testing.T) {
	long := func(n int) string { return "SUB " + strings.Repeat("a", n-len("SUB \n")) + "\n" }
	tests := []struct {
		name     string
		in       []byte
		wantVerb string
		wantArgs string
		wantErr  string // "" when the frame is valid
	}{
		{"sub", raw("SUB attacker.>\n", nil), "SUB", "attacker.>", ""},
		{"carriage return tolerated", raw("SUB attacker.>\r\n", nil), "SUB", "attacker.>", ""},
		{"args trimmed", raw("HELLO   worker  \n", nil), "HELLO", "worker", ""},
		{"bye without args", raw("BYE\n", nil), "BYE", "", ""},
		{"header at the limit", raw(long(decnetbus.MaxHeaderBytes), nil), "SUB", strings.Repeat("a", decnetbus.MaxHeaderBytes-5), ""},
		{"header one past the limit", raw(long(decnetbus.MaxHeaderBytes+1), nil), "", "", "header is 4097 bytes"},
		{"header far past the buffer", raw(long(3*decnetbus.MaxHeaderBytes), nil), "", "", "longer than 4096"},
		{"body length at the limit", append(rawLen("PUB t\n", decnetbus.MaxBodyBytes), objectOf(decnetbus.MaxBodyBytes)...), "PUB", "t", ""},
		{"body length one past the limit", rawLen("PUB t\n", decnetbus.MaxBodyBytes+1), "", "", "body length 1048577"},
		{"empty header", raw("\n", nil), "", "", "empty header"},
		{"only a carriage return", raw("\r\n", nil), "", "", "empty header"},
		{"unknown verb", raw("PING x\n", nil), "", "", "unknown verb"},
		{"lower-case verb", raw("sub x\n", nil), "", "", "unknown verb"},
		{"non-ASCII header", raw("SUB t\xc3\xb3\n", nil), "", "", "not ASCII"},
		{"stream ends in header", []byte("SUB attac"), "", "", "inside a header"},
		{"stream ends in length", []byte("SUB x\n\x00\x00"), "", "", "body length"},
		{"stream ends in body", append(rawLen("PUB t\n", 10), `{"a"`...), "", "", "10-byte body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := decnetbus.NewReader(bytes.NewReader(tt.in)).ReadFrame()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ReadFrame: %v", err)
				}
				if f.Verb != tt.wantVerb || f.Args != tt.wantArgs {
					t.Errorf("got %q %q, want %q %q", f.Verb, f.Args, tt.wantVerb, tt.wantArgs)
				}
				return
			}
			if err == nil || !decnetbus.IsProtocolError(err) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ReadFrame error = %v, want a protocol error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestReadFrameCleanEOF(t *testing.T) {
	r := decnetbus.NewReader(bytes.NewReader(raw("BYE\n", nil)))
	if _, err := r.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestDecodeObject(t *testing.T) {
	for body, ok := range map[string]bool{``: true, `{}`: true, `{"a":1}`: true, `[]`: false, `null`: false, `"x"`: false, `{`: false, `{} {}`: false} {
		if _, err := decnetbus.DecodeObject([]byte(body)); (err == nil) != ok {
			t.Errorf("DecodeObject(%q) error = %v, want ok=%v", body, err, ok)
		}
	}
}

// Over a real socket, the server takes frames at the limits and drops a
// connection that sends one past them, or any malformed frame, while
// other connections keep working.
func TestServerLimitsOverSocket(t *testing.T) {
	path := socketPath(t)
	srv, err := busrig.Listen(path, busrig.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	sub, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	mustWrite(t, sub, decnetbus.Frame{Verb: "SUB", Args: ">"})
	eventually(t, "subscription", func() bool { return srv.Subscribers("x") == 1 })
	subReader := decnetbus.NewReader(sub)

	longTopic := strings.Repeat("t", decnetbus.MaxHeaderBytes-len("PUB \n"))
	cases := []struct {
		name      string
		wire      []byte
		delivered bool // a subscriber gets an EVT
		closed    bool // the publisher's connection is closed
	}{
		{"header at the limit", mustEncode(t, decnetbus.Frame{Verb: "PUB", Args: longTopic, Body: []byte(`{"payload":{"a":1}}`)}), true, false},
		{"ordinary", mustEncode(t, decnetbus.Frame{Verb: "PUB", Args: "attacker.observation.motor.x", Body: []byte(`{"type":"t","payload":{"a":1}}`)}), true, false},
		{"body at the limit", append(rawLen("PUB big\n", decnetbus.MaxBodyBytes-64), objectOf(decnetbus.MaxBodyBytes-64)...), true, false},
		{"header one past the limit", raw("PUB "+longTopic+"x\n", nil), false, true},
		{"body one past the limit", rawLen("PUB t\n", decnetbus.MaxBodyBytes+1), false, true},
		{"body not JSON", raw("PUB t\n", []byte("not json")), false, true},
		{"EVT from a client", raw("EVT t\n", []byte(`{}`)), false, true},
		{"SUB without pattern", raw("SUB\n", nil), false, true},
		{"garbage", []byte("\x00\x01\x02\x03\n\n"), false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.Stats()
			pub, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			if _, err := pub.Write(tc.wire); err != nil {
				t.Fatal(err)
			}
			if tc.closed {
				_ = pub.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := pub.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
					t.Fatalf("publisher connection: read %v, want EOF (closed by the server)", err)
				}
				if got := srv.Stats().Rejected; got != before.Rejected+1 {
					t.Errorf("rejected = %d, want %d", got, before.Rejected+1)
				}
				return
			}
			if tc.delivered {
				_ = sub.SetReadDeadline(time.Now().Add(5 * time.Second))
				f, err := subReader.ReadFrame()
				if err != nil {
					t.Fatalf("subscriber: %v", err)
				}
				if f.Verb != "EVT" {
					t.Fatalf("subscriber got %s", f.Verb)
				}
			}
		})
	}
	// The subscriber survived every bad publisher.
	mustWrite(t, sub, decnetbus.Frame{Verb: "PUB", Args: "self", Body: []byte(`{}`)})
	eventually(t, "only the subscriber connected", func() bool { return srv.Stats().Connections == 1 })
}

func mustEncode(t *testing.T, f decnetbus.Frame) []byte {
	t.Helper()
	b, err := decnetbus.Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustWrite(t *testing.T, c net.Conn, f decnetbus.Frame) {
	t.Helper()
	if _, err := c.Write(mustEncode(t, f)); err != nil {
		t.Fatal(err)
	}
}

// FuzzReadFrame: any input either yields frames that encode back to
// what was read, or a protocol error; never a panic or an unbounded read.
func FuzzReadFrame(f *testing.F) {
	f.Add(raw("SUB a.*\n", nil))
	f.Add(raw("PUB a.b\r\n", []byte(`{"payload":{}}`)))
	f.Add(rawLen("PUB t\n", decnetbus.MaxBodyBytes+1))
	f.Add([]byte("EVT x\n\x00\x00\x00\x02{}BYE\n\x00\x00\x00\x00"))
	f.Add([]byte("\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := decnetbus.NewReader(bytes.NewReader(in))
		for range 64 {
			fr, err := r.ReadFrame()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				if !decnetbus.IsProtocolError(err) {
					t.Fatalf("non-protocol error %v", err)
				}
				return
			}
			if len(fr.Body) > decnetbus.MaxBodyBytes {
				t.Fatalf("body of %d bytes accepted", len(fr.Body))
			}
			if _, err := decnetbus.DecodeObject(fr.Body); err != nil {
				continue // a body that is not an object is the caller's to refuse
			}
			enc, err := decnetbus.Encode(fr)
			if err != nil {
				t.Fatalf("frame read cannot be encoded: %v (%q %q)", err, fr.Verb, fr.Args)
			}
			back, err := decnetbus.NewReader(bytes.NewReader(enc)).ReadFrame()
			if err != nil || back.Verb != fr.Verb || back.Args != fr.Args || !bytes.Equal(back.Body, fr.Body) {
				t.Fatalf("round trip of %q %q: %v", fr.Verb, fr.Args, err)
			}
		}
	})
}
