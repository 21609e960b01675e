package decnetbus

import "strings"

// Match reports whether topic matches pattern: "*" matches exactly one
// non-empty token, ">" as the last token matches one or more tokens, any
// other token matches itself.
func Match(pattern, topic string) bool {
	p := strings.Split(pattern, ".")
	t := strings.Split(topic, ".")
	for i, tok := range p {
		if tok == ">" {
			return i < len(t)
		}
		if i >= len(t) {
			return false
		}
		if tok == "*" {
			if t[i] == "" {
				return false
			}
			continue
		}
		if tok != t[i] {
			return false
		}
	}
	return len(p) == len(t)
}
