package capacity_test

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"decnet-attribution/internal/testrig/capacity"
)

func TestNumberSize(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int
	}{
		{"zero", "0", 1},
		{"negative zero with decimals", "-0.000", 1},
		{"one digit", "7", 2},
		{"two digits", "42", 2},
		{"three digits", "123", 3},
		{"five digits", "12345", 4},
		{"trailing zeros trimmed", "100", 2},
		{"trailing zeros after point trimmed", "12.5000", 3},
		{"leading zeros trimmed", "-0.0012", 2},
		{"sign not counted", "-12345", 4},
		{"plus sign not counted", "+12345", 4},
		{"exponent not counted", "1.5E+10", 2},
		{"lower-case exponent", "25e-3", 2},
		{"38 significant digits", strings.Repeat("9", 38), 20},
		{"unix timestamp with millis", "1714054175.367", 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := capacity.NumberSize(tt.in); got != tt.want {
				t.Errorf("NumberSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestValueSize(t *testing.T) {
	tests := []struct {
		name string
		in   types.AttributeValue
		want int
	}{
		{"ascii string", &types.AttributeValueMemberS{Value: "Alice"}, 5},
		{"utf-8 string counts bytes not runes", &types.AttributeValueMemberS{Value: "héllo"}, 6},
		{"empty string", &types.AttributeValueMemberS{Value: ""}, 0},
		{"number", &types.AttributeValueMemberN{Value: "123"}, 3},
		{"binary counts raw bytes", &types.AttributeValueMemberB{Value: []byte{0, 1, 2, 255}}, 4},
		{"bool", &types.AttributeValueMemberBOOL{Value: true}, 1},
		{"null", &types.AttributeValueMemberNULL{Value: true}, 1},
		{"string set", &types.AttributeValueMemberSS{Value: []string{"ab", "cde"}}, 5},
		{"number set", &types.AttributeValueMemberNS{Value: []string{"1", "12345"}}, 6},
		{"binary set", &types.AttributeValueMemberBS{Value: [][]byte{{1}, {2, 3}}}, 3},
		{"empty list", &types.AttributeValueMemberL{}, 3},
		{"empty map", &types.AttributeValueMemberM{}, 3},
		{
			"list: 3 + each element plus 1",
			&types.AttributeValueMemberL{Value: []types.AttributeValue{
				&types.AttributeValueMemberS{Value: "ab"},     // 2 + 1
				&types.AttributeValueMemberBOOL{Value: false}, // 1 + 1
			}},
			8,
		},
		{
			"map: 3 + each key, value and 1",
			&types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
				"a": &types.AttributeValueMemberS{Value: "xy"}, // 1 + 2 + 1
				"b": &types.AttributeValueMemberN{Value: "1"},  // 1 + 2 + 1
			}},
			11,
		},
		{
			"nested map in list",
			&types.AttributeValueMemberL{Value: []types.AttributeValue{
				&types.AttributeValueMemberM{Value: map[string]types.AttributeValue{ // 3 + (2+3+1) = 9, + 1
					"id": &types.AttributeValueMemberS{Value: "abc"},
				}},
			}},
			13,
		},
		{"nil value", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := capacity.ValueSize(tt.in); got != tt.want {
				t.Errorf("ValueSize = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestItemSize(t *testing.T) {
	tests := []struct {
		name string
		in   map[string]types.AttributeValue
		want int
	}{
		{"nil item", nil, 0},
		{
			"name and value lengths add up",
			map[string]types.AttributeValue{
				"attacker_uuid": &types.AttributeValueMemberS{Value: "att-c248"},    // 13 + 8
				"confidence":    &types.AttributeValueMemberN{Value: "0.8"},         // 10 + 2
				"active":        &types.AttributeValueMemberBOOL{Value: true},       // 6 + 1
				"raw":           &types.AttributeValueMemberB{Value: []byte("xyz")}, // 3 + 3
			},
			46,
		},
		{
			"utf-8 attribute name",
			map[string]types.AttributeValue{
				"été": &types.AttributeValueMemberNULL{Value: true}, // 5 + 1
			},
			6,
		},
		{
			"map attribute",
			map[string]types.AttributeValue{
				"window": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{ // 6 + 3
					"start_ts": &types.AttributeValueMemberN{Value: "1714054145.367"}, // 8 + 8 + 1
					"end_ts":   &types.AttributeValueMemberN{Value: "1714054175.367"}, // 6 + 8 + 1
				}},
			},
			41,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := capacity.ItemSize(tt.in); got != tt.want {
				t.Errorf("ItemSize = %d, want %d", got, tt.want)
			}
		})
	}
}

// The cases below are the worked examples of the DynamoDB Developer Guide
// (capacity unit consumption for reads, writes and transactions).
func TestReadUnits(t *testing.T) {
	tests := []struct {
		name       string
		size       int
		consistent bool
		want       float64
	}{
		{"missing item strongly consistent costs the minimum", 0, true, 1},
		{"missing item eventually consistent costs the minimum", 0, false, 0.5},
		{"3.5 KB strongly consistent", 3584, true, 1},
		{"3.5 KB eventually consistent", 3584, false, 0.5},
		{"exactly 4 KB", 4096, true, 1},
		{"one byte over 4 KB", 4097, true, 2},
		{"8 KB strongly consistent", 8192, true, 2},
		{"8 KB eventually consistent", 8192, false, 1},
		{"10 KB rounds to 12 KB", 10240, true, 3},
		{"query page of 10 items of 400 B eventually consistent", 10 * 400, false, 0.5},
		{"query page of 10 items of 400 B strongly consistent", 10 * 400, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := capacity.ReadUnits(tt.size, tt.consistent); got != tt.want {
				t.Errorf("ReadUnits(%d, %v) = %v, want %v", tt.size, tt.consistent, got, tt.want)
			}
		})
	}
}

func TestWriteUnits(t *testing.T) {
	tests := []struct {
		name string
		size int
		want float64
	}{
		{"nothing still costs one", 0, 1},
		{"500 B", 500, 1},
		{"exactly 1 KB", 1024, 1},
		{"one byte over 1 KB", 1025, 2},
		{"1.5 KB", 1536, 2},
		{"400 KB", 400 * 1024, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := capacity.WriteUnits(tt.size); got != tt.want {
				t.Errorf("WriteUnits(%d) = %v, want %v", tt.size, got, tt.want)
			}
		})
	}
}

func TestTransactUnits(t *testing.T) {
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"transactional write of 500 B", capacity.TransactWriteUnits(500), 2},
		{"transactional write of 1.5 KB", capacity.TransactWriteUnits(1536), 4},
		{"transactional read of 8 KB", capacity.TransactReadUnits(8192), 4},
		{"transactional read of 3.5 KB", capacity.TransactReadUnits(3584), 2},
		{"transactional read of a missing item", capacity.TransactReadUnits(0), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}
