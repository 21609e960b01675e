package capacity

import (
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

const (
	// WriteUnitBytes is the item size covered by one write capacity unit.
	WriteUnitBytes = 1024
	// ReadUnitBytes is the item size covered by one strongly consistent read
	// capacity unit.
	ReadUnitBytes = 4096

	// containerOverhead is the fixed cost of a List or Map value.
	containerOverhead = 3
	// elementOverhead is the extra cost of each List element or Map entry.
	elementOverhead = 1
)

// ItemSize returns the size in bytes of an item as DynamoDB counts it for
// capacity: the sum over its attributes of the UTF-8 length of the name plus
// the size of the value (see ValueSize). A nil or empty item has size 0.
func ItemSize(item map[string]types.AttributeValue) int {
	size := 0
	for name, v := range item {
		size += len(name) + ValueSize(v)
	}
	return size
}

// ValueSize returns the size in bytes of one attribute value, without its
// name. The rules are listed in the package documentation. A nil value, or a
// union member this package does not know, has size 0.
func ValueSize(v types.AttributeValue) int {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return len(v.Value)
	case *types.AttributeValueMemberN:
		return NumberSize(v.Value)
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
			size += NumberSize(n)
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
			size += ValueSize(e) + elementOverhead
		}
		return size
	case *types.AttributeValueMemberM:
		size := containerOverhead
		for name, e := range v.Value {
			size += len(name) + ValueSize(e) + elementOverhead
		}
		return size
	default:
		return 0
	}
}

// NumberSize returns the approximate size in bytes of a DynamoDB number given
// in its wire form (for example "-12.50", "1E+3"): one byte per two
// significant digits, rounded up, plus one byte. Significant digits are the
// mantissa digits left after dropping the sign, the decimal point, the
// exponent, and leading and trailing zeros; zero has none, so its size is 1.
func NumberSize(n string) int {
	if i := strings.IndexAny(n, "eE"); i >= 0 {
		n = n[:i]
	}
	n = strings.TrimLeft(n, "+-")
	n = strings.ReplaceAll(n, ".", "")
	n = strings.Trim(n, "0")
	digits := len(n)
	return (digits+1)/2 + 1
}

// WriteUnits returns the write capacity units of one write of an item of the
// given size: one unit per started 1 KB (1024 bytes), at least one.
func WriteUnits(size int) float64 {
	return float64(writeHalves(size)) / 2
}

// ReadUnits returns the read capacity units of reading the given number of
// bytes in one request: one unit per started 4 KB (4096 bytes), at least
// one, halved when the read is eventually consistent.
func ReadUnits(size int, consistent bool) float64 {
	return float64(readHalves(size, consistent)) / 2
}

// TransactWriteUnits returns the write capacity units of one action of a
// TransactWriteItems request that writes an item of the given size: twice
// WriteUnits.
func TransactWriteUnits(size int) float64 {
	return 2 * WriteUnits(size)
}

// TransactReadUnits returns the read capacity units of one item read in a
// transaction (a TransactGetItems Get, or a TransactWriteItems
// ConditionCheck): twice a strongly consistent read.
func TransactReadUnits(size int) float64 {
	return 2 * ReadUnits(size, true)
}

// The meter keeps units in halves so that eventually consistent reads add up
// exactly in integers.

func writeHalves(size int) int64 {
	return 2 * blocks(size, WriteUnitBytes)
}

func readHalves(size int, consistent bool) int64 {
	n := blocks(size, ReadUnitBytes)
	if consistent {
		return 2 * n
	}
	return n
}

// blocks returns the number of started blocks of the given size needed to
// hold size bytes, at least one.
func blocks(size, block int) int64 {
	if size <= block {
		return 1
	}
	return int64((size + block - 1) / block)
}
