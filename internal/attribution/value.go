package attribution

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// MaxValueBytes bounds the canonical JSON of one observation value. The
// series record keeps up to 2×window values, so the bound keeps a state item
// far below DynamoDB's 400 KB item limit (see MaxWindow).
const MaxValueBytes = 1024

// Value is an observation value as canonical JSON: object keys sorted, no
// insignificant white space, integers exactly as written (any size), and
// numbers with a fraction or an exponent in float64's shortest form (so 1.0
// is 1 and 1e2 is 100). The text keeps the value's type: true stays true.
//
// Two values are equal when their classes are (see Class), which is the
// reference engine's equality over decoded JSON: true = 1 = 1.0,
// false = 0 = -0.0, "1" ≠ 1, null equals only null.
type Value string

// Null is the JSON null value.
const Null Value = "null"

// CanonicalValue parses raw JSON into its canonical Value.
func CanonicalValue(raw []byte) (Value, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("not a JSON value: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", fmt.Errorf("not a single JSON value")
	}
	v, err := mapNumbers(v, canonicalNumber)
	if err != nil {
		return "", fmt.Errorf("not a JSON value: %w", err)
	}
	return encodeCanonical(v)
}

// canonicalNumber keeps an integer literal's digits and reads any other
// number as a float64, which is what the reference's JSON decoder does.
func canonicalNumber(n json.Number) (json.Number, error) {
	s := string(n)
	if isIntegerLiteral(s) {
		if s == "-0" {
			return "0", nil
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return "", fmt.Errorf("number %s is out of float64's range", truncate([]byte(s)))
	}
	return json.Number(floatText(f)), nil
}

// floatText is a finite float's shortest JSON text; negative zero keeps a
// fraction so that it reads back as a float, not as the integer 0.
func floatText(f float64) string {
	b, _ := json.Marshal(f)
	if string(b) == "-0" {
		return "-0.0"
	}
	return string(b)
}

func isIntegerLiteral(s string) bool {
	return !strings.ContainsAny(s, ".eE")
}

// mapNumbers rewrites every number of a decoded JSON tree.
func mapNumbers(v any, f func(json.Number) (json.Number, error)) (any, error) {
	switch x := v.(type) {
	case json.Number:
		return f(x)
	case []any:
		for i, e := range x {
			m, err := mapNumbers(e, f)
			if err != nil {
				return nil, err
			}
			x[i] = m
		}
	case map[string]any:
		for k, e := range x {
			m, err := mapNumbers(e, f)
			if err != nil {
				return nil, err
			}
			x[k] = m
		}
	}
	return v, nil
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

// Class is the value's equality class, itself a canonical Value: booleans
// become the numbers 1 and 0, and a float with an integral value becomes
// that integer exactly (so 9007199254740992.0 is 9007199254740992, while
// 9007199254740993 stays itself); arrays and objects map element by
// element. Two values are equal exactly when their classes are the same
// text. Strings, null and integers are their own class, without copying.
func (v Value) Class() Value {
	if v == "" {
		return Null
	}
	switch c := v[0]; {
	case c == '"' || v == Null:
		return v
	case v == "true":
		return "1"
	case v == "false":
		return "0"
	case c == '-' || c >= '0' && c <= '9':
		return Value(numberClass(string(v)))
	}
	dec := json.NewDecoder(strings.NewReader(string(v)))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return v // not canonical JSON: only equal to itself
	}
	class, err := encodeCanonical(classTree(tree))
	if err != nil {
		return v
	}
	return class
}

func classTree(v any) any {
	switch x := v.(type) {
	case bool:
		if x {
			return json.Number("1")
		}
		return json.Number("0")
	case json.Number:
		return json.Number(numberClass(string(x)))
	case []any:
		for i, e := range x {
			x[i] = classTree(e)
		}
	case map[string]any:
		for k, e := range x {
			x[k] = classTree(e)
		}
	}
	return v
}

// numberClass is an integer's digits, or a float's shortest text unless
// its value is integral, then the exact integer it equals.
func numberClass(s string) string {
	if isIntegerLiteral(s) {
		if s == "-0" {
			return "0"
		}
		return s
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	if f != math.Trunc(f) || math.IsInf(f, 0) {
		return floatText(f)
	}
	if math.Abs(f) < 1<<53 {
		return strconv.FormatInt(int64(f), 10)
	}
	return new(big.Float).SetFloat64(f).Text('f', 0)
}

// Equal reports whether two values are equal under the reference's
// equality.
func (v Value) Equal(w Value) bool { return v == w || v.Class() == w.Class() }

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
// false are 1 and 0, numbers are themselves (the nearest float64). Anything
// else is an error.
func (v Value) Float() (float64, error) {
	switch v {
	case "", Null, "false":
		return 0, nil
	case "true":
		return 1, nil
	}
	if c := v[0]; c == '-' || c >= '0' && c <= '9' {
		f, err := strconv.ParseFloat(string(v), 64)
		if err == nil {
			return f, nil
		}
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("number %s is out of float64's range", truncate([]byte(v)))
		}
	}
	return 0, fmt.Errorf("want a number, bool or null, got %s", v.kindName())
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
	return Value(floatText(f))
}
