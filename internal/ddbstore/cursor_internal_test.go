package ddbstore

import (
	"maps"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestScanCursorRoundTrip(t *testing.T) {
	key := map[string]types.AttributeValue{attrSeries: str("id|a.b"), attrEvidenceRef: str("shard:att#1")}
	c, err := encodeCursor(key)
	if err != nil || len(c) == 0 {
		t.Fatalf("encode: %q, %v", c, err)
	}
	back, err := decodeCursor(c)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(back, key, func(a, b types.AttributeValue) bool {
		return a.(*types.AttributeValueMemberS).Value == b.(*types.AttributeValueMemberS).Value
	}) {
		t.Fatalf("round trip %v, want %v", back, key)
	}
	if c, err := encodeCursor(nil); err != nil || len(c) != 0 {
		t.Fatalf("end of segment: %q, %v", c, err)
	}
	if start, err := decodeCursor(nil); err != nil || start != nil {
		t.Fatalf("start of segment: %v, %v", start, err)
	}
	if _, err := encodeCursor(map[string]types.AttributeValue{attrSeries: integer(1)}); err == nil {
		t.Fatal("a number key attribute was encoded")
	}
}
