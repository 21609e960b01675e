// Package decnetbus speaks DECNET's local bus protocol: frames over a Unix
// stream socket, NATS-style topic patterns, and a client that subscribes,
// publishes and reconnects.
//
// # Frames
//
// A frame is an ASCII header line "VERB args\n" (a '\r' before the '\n' is
// tolerated), a 4-byte big-endian body length, then the body: a JSON object
// or nothing. The header, its newline included, is at most MaxHeaderBytes;
// the body at most MaxBodyBytes. The verbs are HELLO <name>, PUB <topic>
// (body: an envelope whose "type" and "payload" the server keeps), SUB and
// UNSUB <pattern>, EVT <topic> (server to subscriber, body: the envelope
// {"v","id","topic","type","ts","payload"}) and BYE.
//
// The server answers nothing: no acknowledgement of HELLO, SUB or PUB, no
// error frame. A malformed frame closes the connection. Delivery is at most
// once: a subscriber whose outbound queue is full loses its oldest events,
// and a publisher never hears its own events.
//
// # Patterns
//
// Topics are dot-separated tokens. In a pattern, "*" matches exactly one
// non-empty token and a trailing ">" matches one or more tokens (Match).
package decnetbus
