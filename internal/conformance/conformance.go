// Package conformance loads the reference vectors in testdata/ and compares
// results with them the way the reference asks: numbers within a relative
// 1e-9, everything else exactly.
package conformance

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// Stream is one line of testdata/public-stream.jsonl.
type Stream struct {
	Registry       map[string]string `json:"registry"`
	Messages       []json.RawMessage `json:"messages"`
	ExpectedEvents []map[string]any  `json:"expected_events"`
	ExpectedStates []map[string]any  `json:"expected_states"`
}

// Dir is the repository's testdata directory.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata")
}

// Lines reads a JSON Lines file of testdata; it is an error for the file to
// be missing or empty.
func Lines(name string) ([][]byte, error) {
	path := filepath.Join(Dir(), name)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("conformance vectors missing: %w", err)
	}
	defer f.Close()
	var lines [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			lines = append(lines, append([]byte(nil), sc.Bytes()...))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("%s holds no vectors", path)
	}
	return lines, nil
}

// Streams reads testdata/public-stream.jsonl.
func Streams() ([]Stream, error) {
	lines, err := Lines("public-stream.jsonl")
	if err != nil {
		return nil, err
	}
	out := make([]Stream, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal(l, &out[i]); err != nil {
			return nil, fmt.Errorf("stream vector %d: %w", i+1, err)
		}
	}
	return out, nil
}

// RegistryJSON is the vector's registry as a JSON object.
func (s Stream) RegistryJSON() []byte {
	b, _ := json.Marshal(s.Registry)
	return b
}

// CloseEnough compares two numbers within a relative 1e-9.
func CloseEnough(a, b float64) bool {
	return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

// SameJSON compares decoded JSON values, numbers within a relative 1e-9.
func SameJSON(a, b any) bool {
	x, xok := a.(float64)
	y, yok := b.(float64)
	if xok && yok {
		return CloseEnough(x, y)
	}
	ab, _ := json.Marshal(a)
	bb, _ := json.Marshal(b)
	return bytes.Equal(ab, bb)
}

// Diff compares rows field by field for the fields of want; it returns a
// description of the first difference, or "".
func Diff(got, want []map[string]any) string {
	if len(got) != len(want) {
		return fmt.Sprintf("got %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		fields := make([]string, 0, len(want[i]))
		for f := range want[i] {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		for _, f := range fields {
			if !SameJSON(got[i][f], want[i][f]) {
				return fmt.Sprintf("row %d: %s = %v, want %v\n got  %v\n want %v", i, f, got[i][f], want[i][f], got[i], want[i])
			}
		}
	}
	return ""
}

// BySeries groups event rows by attacker_uuid and primitive, keeping their
// order: the order that matters is the one within a series.
func BySeries(rows []map[string]any) map[string][]map[string]any {
	out := make(map[string][]map[string]any)
	for _, r := range rows {
		k := fmt.Sprint(r["attacker_uuid"], "|", r["primitive"])
		out[k] = append(out[k], r)
	}
	return out
}

// Rows decodes JSON objects.
func Rows(raw []json.RawMessage) ([]map[string]any, error) {
	out := make([]map[string]any, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Prefix returns a copy of the vector whose attacker_uuid values, in
// messages and expectations, carry a prefix, so several vectors can share
// one store without their attackers meeting.
func (s Stream) Prefix(p string) (Stream, error) {
	out := s
	out.Messages = make([]json.RawMessage, len(s.Messages))
	for i, m := range s.Messages {
		var obj map[string]any
		if err := json.Unmarshal(m, &obj); err != nil {
			return s, err
		}
		if a, ok := obj["attacker_uuid"].(string); ok {
			obj["attacker_uuid"] = p + a
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return s, err
		}
		out.Messages[i] = b
	}
	prefixRows := func(rows []map[string]any) []map[string]any {
		res := make([]map[string]any, len(rows))
		for i, r := range rows {
			c := make(map[string]any, len(r))
			for k, v := range r {
				c[k] = v
			}
			if a, ok := c["attacker_uuid"].(string); ok {
				c["attacker_uuid"] = p + a
			}
			res[i] = c
		}
		return res
	}
	out.ExpectedEvents = prefixRows(s.ExpectedEvents)
	out.ExpectedStates = prefixRows(s.ExpectedStates)
	return out, nil
}

// Attackers lists the attackers of the vector's messages, sorted.
func (s Stream) Attackers() []string {
	seen := map[string]bool{}
	for _, m := range s.Messages {
		var obj struct {
			AttackerUUID string `json:"attacker_uuid"`
		}
		if json.Unmarshal(m, &obj) == nil && obj.AttackerUUID != "" {
			seen[obj.AttackerUUID] = true
		}
	}
	out := make([]string, 0, len(seen))
	for a := range seen {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// Primitives lists the primitives of the vector's registry, sorted.
func (s Stream) Primitives() []string {
	out := make([]string, 0, len(s.Registry))
	for p := range s.Registry {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// JoinLines joins messages as JSON Lines.
func JoinLines(msgs []json.RawMessage) string {
	var b strings.Builder
	for _, m := range msgs {
		b.Write(m)
		b.WriteByte('\n')
	}
	return b.String()
}
