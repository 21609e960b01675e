// Package itemsize applies DynamoDB's documented item-size rules to
// attribute values: the sizes that capacity units and the 400 KB item and
// 4 MB transaction limits are counted in. Strings and binaries count their
// bytes, numbers about one byte per two significant digits plus one, a
// List or Map 3 bytes plus 1 per element besides its elements and names.
package itemsize

import (
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

const (
	// containerOverhead is the fixed cost of a List or Map value.
	containerOverhead = 3
	// elementOverhead is the extra cost of each List element or Map entry.
	elementOverhead = 1
)

// Item returns the size in bytes of an item as DynamoDB counts it for
// capacity: the sum over its attributes of the UTF-8 length of the name plus
// the size of the value (see Value). A nil or empty item has size 0.
func Item(item map[string]types.AttributeValue) int {
	size := 0
	for name, v := range item {
		size += len(name) + Value(v)
	}
	return size
}

// Value returns the size in bytes of one attribute value, without its
// name. A nil value, or a union member this package does not know, has
// size 0.
func Value(v types.AttributeValue) int {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return len(v.Value)
	case *types.AttributeValueMemberN:
		return Number(v.Value)
	case *types.AttributeValueMemberB:
		return len(v.Value)
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberSS:
		size := 0
		for _, s := range v.Value {
			size += len(s)
		}
		return size
	case *types.AttributeValueMemberNS:
		size := 0
		for _, n := range v.Value {
			size += Number(n)
		}
		return size
	case *types.AttributeValueMemberBS:
		size := 0
		for _, b := range v.Value {
			size += len(b)
		}
		return size
	case *types.AttributeValueMemberL:
		size := containerOverhead
		for _, e := range v.Value {
			size += Value(e) + elementOverhead
		}
		return size
	case *types.AttributeValueMemberM:
		size := containerOverhead
		for name, e := range v.Value {
			size += len(name) + Value(e) + elementOverhead
		}
		return size
	default:
		return 0
	}
}

// Number returns the approximate size in bytes of a DynamoDB number given
// in its wire form (for example "-12.50", "1E+3"): one byte per two
// significant digits, rounded up, plus one byte. Significant digits are the
// mantissa digits left after dropping the sign, the decimal point, the
// exponent, and leading and trailing zeros; zero has none, so its size is 1.
func Number(n string) int {
	if i := strings.IndexAny(n, "eE"); i >= 0 {
		n = n[:i]
	}
	n = strings.TrimLeft(n, "+-")
	n = strings.ReplaceAll(n, ".", "")
	n = strings.Trim(n, "0")
	digits := len(n)
	return (digits+1)/2 + 1
}
