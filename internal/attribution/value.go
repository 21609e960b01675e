package attribution

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
)

// MaxValueBytes bounds the canonical JSON of one observation value. The
// series record keeps up to 2×window values, so the bound keeps a state item
// far below DynamoDB's 400 KB item limit (see MaxWindow).
const MaxValueBytes = 1024

// Value is an observation value as canonical JSON: object keys sorted,
// numbers in their shortest form (so 1 and 1.0 are one value), no
// insignificant white space. Two values are equal when their canonical
// texts are equal, which is JSON equality: "1" differs from 1, true from 1,
// and null is a value.
type Value string

// Null is the JSON null value.
const Null Value = "null"

// CanonicalValue parses raw JSON into its canonical Value.
func CanonicalValue(raw []byte) (Value, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("not a JSON value: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", fmt.Errorf("not a single JSON value")
	}
	return encodeCanonical(v)
}

func encodeCanonical(v any) (Value, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return Value(bytes.TrimRight(buf.Bytes(), "\n")), nil
}

// MarshalJSON writes the value as raw JSON.
func (v Value) MarshalJSON() ([]byte, error) {
	if v == "" {
		return []byte("null"), nil
	}
	return []byte(v), nil
}

// UnmarshalJSON reads any JSON value and canonicalises it.
func (v *Value) UnmarshalJSON(b []byte) error {
	c, err := CanonicalValue(b)
	if err != nil {
		return err
	}
	*v = c
	return nil
}

// IsNull reports whether the value is JSON null.
func (v Value) IsNull() bool { return v == "" || v == Null }

// Float reads the value as the numeric merger does: null is 0, true and
// false are 1 and 0, numbers are themselves. Anything else is an error.
func (v Value) Float() (float64, error) {
	switch v {
	case "", Null, "false":
		return 0, nil
	case "true":
		return 1, nil
	}
	if c := v[0]; c == '-' || c >= '0' && c <= '9' {
		// A canonical number is valid ParseFloat input: skip the decoder.
		if f, err := strconv.ParseFloat(string(v), 64); err == nil {
			return f, nil
		}
	}
	var f float64
	if err := json.Unmarshal([]byte(v), &f); err != nil {
		return 0, fmt.Errorf("want a number, bool or null, got %s", v.kindName())
	}
	return f, nil
}

func (v Value) kindName() string {
	if v == "" {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "a string"
	case '[':
		return "an array"
	case '{':
		return "an object"
	}
	return "JSON " + string(v)
}

// FloatValue is the canonical Value of a float, as the numeric merger
// reports its current value.
func FloatValue(f float64) Value {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return Null
	}
	b, _ := json.Marshal(f)
	return Value(b)
}
