package itemsize_test

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"decnet-attribution/internal/itemsize"
)

func TestNumber(t *testing.T) {
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
			if got := itemsize.Number(tt.in); got != tt.want {
				t.Errorf("NumberSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestValue(t *testing.T) {
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
			if got := itemsize.Value(tt.in); got != tt.want {
				t.Errorf("ValueSize = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestItem(t *testing.T) {
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
			if got := itemsize.Item(tt.in); got != tt.want {
				t.Errorf("ItemSize = %d, want %d", got, tt.want)
			}
		})
	}
}
