package decnetbus

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits of one frame.
const (
	// MaxHeaderBytes bounds the header line, its newline included.
	MaxHeaderBytes = 4096
	// MaxBodyBytes bounds the body.
	MaxBodyBytes = 1 << 20
)

// Verbs of the protocol.
const (
	VerbHello = "HELLO"
	VerbPub   = "PUB"
	VerbSub   = "SUB"
	VerbUnsub = "UNSUB"
	VerbEvt   = "EVT"
	VerbBye   = "BYE"
)

func validVerb(v string) bool {
	switch v {
	case VerbHello, VerbPub, VerbSub, VerbUnsub, VerbEvt, VerbBye:
		return true
	}
	return false
}

// ProtocolError is a malformed or oversized frame. The peer that sent it
// is dropped.
type ProtocolError struct{ Reason string }

func (e *ProtocolError) Error() string { return "bus protocol: " + e.Reason }

func protocolErrorf(format string, args ...any) error {
	return &ProtocolError{Reason: fmt.Sprintf(format, args...)}
}

// IsProtocolError reports whether err is (or wraps) a *ProtocolError.
func IsProtocolError(err error) bool {
	var pe *ProtocolError
	return errors.As(err, &pe)
}

// Frame is one frame: its verb, the rest of the header line (trimmed) and
// the raw body (nil when empty).
type Frame struct {
	Verb string
	Args string
	Body []byte
}

// Encode returns the wire form of a frame. It refuses what a reader would
// refuse: an unknown verb, a newline or non-ASCII byte in args, a header
// or body over the limits, a body that is not a JSON object.
func Encode(f Frame) ([]byte, error) {
	if !validVerb(f.Verb) {
		return nil, protocolErrorf("unknown verb %q", f.Verb)
	}
	if strings.ContainsAny(f.Args, "\r\n") {
		return nil, protocolErrorf("args of %s contain a newline", f.Verb)
	}
	for i := 0; i < len(f.Args); i++ {
		if f.Args[i] >= 0x80 {
			return nil, protocolErrorf("args of %s are not ASCII (byte %d)", f.Verb, i)
		}
	}
	header := strings.TrimRight(f.Verb+" "+f.Args, " \t") + "\n"
	if len(header) > MaxHeaderBytes {
		return nil, protocolErrorf("header is %d bytes, more than %d", len(header), MaxHeaderBytes)
	}
	if len(f.Body) > MaxBodyBytes {
		return nil, protocolErrorf("body is %d bytes, more than %d", len(f.Body), MaxBodyBytes)
	}
	if len(f.Body) > 0 {
		if err := checkObject(f.Body); err != nil {
			return nil, err
		}
	}
	out := make([]byte, 0, len(header)+4+len(f.Body))
	out = append(out, header...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(f.Body)))
	return append(out, f.Body...), nil
}

// checkObject reports a body that is not one JSON object.
func checkObject(body []byte) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return protocolErrorf("body is not a JSON object: %v", err)
	}
	if obj == nil {
		return protocolErrorf("body is not a JSON object: null")
	}
	return nil
}

// Reader reads frames from a stream.
type Reader struct {
	r *bufio.Reader
}

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader {
	// The buffer holds a whole header, so ReadSlice finds its newline.
	return &Reader{r: bufio.NewReaderSize(r, 2*MaxHeaderBytes)}
}

// ReadFrame reads one frame. It returns io.EOF when the stream ends
// cleanly between frames, and a *ProtocolError for anything malformed: a
// header over MaxHeaderBytes, an empty or non-ASCII header, an unknown
// verb, a body length over MaxBodyBytes, a stream ending inside a frame.
// The body is returned raw; whether it must be a JSON object is the
// caller's rule (DecodeObject).
func (fr *Reader) ReadFrame() (Frame, error) {
	line, err := fr.readHeader()
	if err != nil {
		return Frame{}, err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return Frame{}, protocolErrorf("empty header line")
	}
	verb, args, _ := strings.Cut(line, " ")
	if !validVerb(verb) {
		return Frame{}, protocolErrorf("unknown verb %q", truncate(verb, 32))
	}
	var n [4]byte
	if _, err := io.ReadFull(fr.r, n[:]); err != nil {
		return Frame{}, protocolErrorf("stream ended inside the body length of %s: %v", verb, err)
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > MaxBodyBytes {
		return Frame{}, protocolErrorf("body length %d is more than %d", size, MaxBodyBytes)
	}
	f := Frame{Verb: verb, Args: strings.TrimSpace(args)}
	if size > 0 {
		f.Body = make([]byte, size)
		if _, err := io.ReadFull(fr.r, f.Body); err != nil {
			return Frame{}, protocolErrorf("stream ended inside a %d-byte body of %s: %v", size, verb, err)
		}
	}
	return f, nil
}

func (fr *Reader) readHeader() (string, error) {
	line, err := fr.r.ReadSlice('\n')
	switch {
	case err == nil:
	case errors.Is(err, bufio.ErrBufferFull):
		return "", protocolErrorf("header is longer than %d bytes", MaxHeaderBytes)
	case errors.Is(err, io.EOF) && len(line) == 0:
		return "", io.EOF
	case errors.Is(err, io.EOF):
		return "", protocolErrorf("stream ended inside a header")
	default:
		return "", err
	}
	if len(line) > MaxHeaderBytes {
		return "", protocolErrorf("header is %d bytes, more than %d", len(line), MaxHeaderBytes)
	}
	for i, b := range line {
		if b >= 0x80 {
			return "", protocolErrorf("header is not ASCII (byte %d)", i)
		}
	}
	return string(line), nil
}

// DecodeObject decodes a frame body that must be a JSON object or empty
// (an empty body is an empty object).
func DecodeObject(body []byte) (map[string]json.RawMessage, error) {
	obj := map[string]json.RawMessage{}
	if len(body) == 0 {
		return obj, nil
	}
	if err := checkObject(body); err != nil {
		return nil, err
	}
	_ = json.Unmarshal(body, &obj)
	return obj, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
