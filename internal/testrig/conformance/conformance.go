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
	"strconv"
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
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata")
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

// Files lists the vector files of testdata whose names end in suffix
// ("-merge.jsonl", "-stream.jsonl"), sorted; it is an error to find none.
func Files(suffix string) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(Dir(), "*"+suffix))
	if err != nil || len(paths) == 0 {
		return nil, fmt.Errorf("no conformance vectors *%s in %s", suffix, Dir())
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	sort.Strings(names)
	return names, nil
}

// Streams reads every stream vector of testdata (*-stream.jsonl), file by
// file. Numbers in expectations stay json.Number, so integers compare
// exactly.
func Streams() ([]Stream, error) {
	files, err := Files("-stream.jsonl")
	if err != nil {
		return nil, err
	}
	var out []Stream
	for _, name := range files {
		lines, err := Lines(name)
		if err != nil {
			return nil, err
		}
		for i, l := range lines {
			var s Stream
			if err := decodeInto(l, &s); err != nil {
				return nil, fmt.Errorf("%s: vector %d: %w", name, i+1, err)
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// Decode reads JSON with numbers as json.Number, so that big integers
// survive.
func Decode(b []byte) (any, error) {
	var v any
	err := decodeInto(b, &v)
	return v, err
}

func decodeInto(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
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

// SameJSON compares decoded JSON values (numbers as float64 or
// json.Number): two integers exactly, other numbers within a relative
// 1e-9, booleans only with booleans, arrays and objects element by
// element.
func SameJSON(a, b any) bool {
	if x, xint, ok := number(a); ok {
		y, yint, ok := number(b)
		if !ok {
			return false
		}
		if xint && yint {
			return x == y
		}
		fx, errx := strconv.ParseFloat(x, 64)
		fy, erry := strconv.ParseFloat(y, 64)
		return errx == nil && erry == nil && CloseEnough(fx, fy)
	}
	switch x := a.(type) {
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !SameJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, found := y[k]
			if !found || !SameJSON(xv, yv) {
				return false
			}
		}
		return true
	}
	return a == b
}

// number reads a decoded JSON number as text, and whether it is an integer
// literal. A float64 never counts as one: decoding may have rounded it.
func number(v any) (text string, integer bool, ok bool) {
	switch x := v.(type) {
	case json.Number:
		return string(x), !strings.ContainsAny(string(x), ".eE"), true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), false, true
	}
	return "", false, false
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

// Rows decodes JSON objects, numbers as json.Number.
func Rows(raw []json.RawMessage) ([]map[string]any, error) {
	out := make([]map[string]any, len(raw))
	for i, r := range raw {
		if err := decodeInto(r, &out[i]); err != nil {
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
		// Raw fields: values reach the engine exactly as the vector wrote them.
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(m, &obj); err != nil {
			return s, err
		}
		var a string
		if json.Unmarshal(obj["attacker_uuid"], &a) == nil && a != "" {
			obj["attacker_uuid"], _ = json.Marshal(p + a)
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
