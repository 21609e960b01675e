package ddbstore

import (
	"maps"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestScanCursorRoundTrip(t *testing.T) {
	key := map[string]types.AttributeValue{attrSeries: str("id|a.b"), attrEvidenceRef: str("shard:att#1")}
	for _, inStates := range []bool{false, true} {
		c, err := encodeCursor(key, inStates)
		if err != nil || len(c) == 0 {
			t.Fatalf("encode: %q, %v", c, err)
		}
		back, states, err := decodeCursor(c)
		if err != nil {
			t.Fatal(err)
		}
		if states != inStates || !maps.EqualFunc(back, key, func(a, b types.AttributeValue) bool {
			return a.(*types.AttributeValueMemberS).Value == b.(*types.AttributeValueMemberS).Value
		}) {
			t.Fatalf("round trip %v (states %v), want %v (states %v)", back, states, key, inStates)
		}
	}
	if c, err := encodeCursor(nil, true); err != nil || len(c) != 0 {
		t.Fatalf("end of segment: %q, %v", c, err)
	}
	if start, states, err := decodeCursor(nil); err != nil || start != nil || states {
		t.Fatalf("start of segment: %v, %v, %v", start, states, err)
	}
	if start, states, err := decodeCursor(statesStart); err != nil || start != nil || !states {
		t.Fatalf("start of the states part: %v, %v, %v", start, states, err)
	}
	if _, err := encodeCursor(map[string]types.AttributeValue{attrSeries: integer(1)}, false); err == nil {
		t.Fatal("a number key attribute was encoded")
	}
}
