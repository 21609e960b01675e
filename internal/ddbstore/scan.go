package ddbstore

import (
	"context"
	"decnet-attribution/internal/attribution"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// StoredSeries is a series found in the observations table: its key as
// stored ("identity|primitive", as attribution.SeriesKey.String writes
// it) and the attacker its observation names, "" if it names none.
type StoredSeries struct {
	Series   string
	Attacker string
}

// ScanCursor is where the scan of a segment stands. It is opaque JSON, so
// that a checkpoint file can keep it as it is; empty is the start of the
// segment (asked for) or its end (answered).
type ScanCursor []byte

// ObservationPage is one page of a segment of the observations table.
type ObservationPage struct {
	// Series has one entry per observation item read: series repeat.
	Series []StoredSeries
	// Scanned counts the items the page read.
	Scanned int64
	// Next continues the segment; empty when the segment is finished.
	Next ScanCursor
}

// ScanObservations reads one page of segment (0 to segments-1) of the
// observations table, from where the cursor stands, with at most limit
// items (0: pages of up to 1 MB). The segments of one segment count cover
// the table once, so they can be scanned in parallel.
//
// Observations still held inline by their series record have no item yet:
// once a segment of the observations table is done, the scan goes on with
// the same segment of the states table and reports those, so that every
// stored observation is found once.
func (s *Store) ScanObservations(ctx context.Context, segment, segments int, from ScanCursor, limit int32) (ObservationPage, error) {
	start, inStates, err := decodeCursor(from)
	if err != nil {
		return ObservationPage{}, err
	}
	if inStates {
		return s.scanInline(ctx, segment, segments, start, limit)
	}
	in := &dynamodb.ScanInput{
		TableName:     &s.Tables.Observations,
		Segment:       aws.Int32(int32(segment)),
		TotalSegments: aws.Int32(int32(segments)),
		// The observation's body names its attacker. (A Scan is charged
		// for whole items whatever it projects.)
		ProjectionExpression:     aws.String("#s, #o"),
		ExpressionAttributeNames: map[string]string{"#s": attrSeries, "#o": attrObservation},
		ExclusiveStartKey:        start,
	}
	if limit > 0 {
		in.Limit = aws.Int32(limit)
	}
	out, err := s.Client.Scan(ctx, in)
	if err != nil {
		return ObservationPage{}, fmt.Errorf("scan segment %d of %s: %w", segment, s.Tables.Observations, err)
	}
	page := ObservationPage{Series: make([]StoredSeries, 0, len(out.Items)), Scanned: int64(out.ScannedCount)}
	for _, item := range out.Items {
		if series := stringAttr(item, attrSeries); series != "" {
			page.Series = append(page.Series, StoredSeries{Series: series, Attacker: attackerOf(item)})
		}
	}
	if len(out.LastEvaluatedKey) == 0 {
		page.Next = statesStart
		return page, nil
	}
	if page.Next, err = encodeCursor(out.LastEvaluatedKey, false); err != nil {
		return ObservationPage{}, err
	}
	return page, nil
}

// scanInline reads one page of a segment of the states table and reports
// the observations its series records hold inline, one entry each.
func (s *Store) scanInline(ctx context.Context, segment, segments int, start map[string]types.AttributeValue, limit int32) (ObservationPage, error) {
	in := &dynamodb.ScanInput{
		TableName:                &s.Tables.States,
		Segment:                  aws.Int32(int32(segment)),
		TotalSegments:            aws.Int32(int32(segments)),
		ProjectionExpression:     aws.String("#p, #rec"),
		ExpressionAttributeNames: map[string]string{"#p": attrPrimitive, "#rec": attrRecord},
		ExclusiveStartKey:        start,
	}
	if limit > 0 {
		in.Limit = aws.Int32(limit)
	}
	out, err := s.Client.Scan(ctx, in)
	if err != nil {
		return ObservationPage{}, fmt.Errorf("scan segment %d of %s: %w", segment, s.Tables.States, err)
	}
	var page ObservationPage
	for _, item := range out.Items {
		if stringAttr(item, attrPrimitive) == identityItem {
			continue
		}
		var rec attribution.SeriesRecord
		if err := decodeRecord(item, &rec); err != nil {
			return ObservationPage{}, fmt.Errorf("scan %s: %w", s.Tables.States, err)
		}
		for _, o := range rec.Inline {
			page.Series = append(page.Series, StoredSeries{Series: o.Ref().Key.String(), Attacker: o.Observation.AttackerUUID})
		}
	}
	// Scanned counts observation items: a record's inline observations may
	// have their items too, already counted.
	if page.Next, err = encodeCursor(out.LastEvaluatedKey, true); err != nil {
		return ObservationPage{}, err
	}
	return page, nil
}

// cursorTable marks, in a cursor, a position in the states table; a cursor
// without it (every cursor written before inline observations) is one in
// the observations table. Key attribute names never start with '#'.
const cursorTable = "#table"

// statesStart is the cursor of a segment's start in the states table.
var statesStart = ScanCursor(`{"` + cursorTable + `":"states"}`)

// attackerOf reads the attacker of a scanned observation item, leniently:
// only that field of the body is decoded.
func attackerOf(item map[string]types.AttributeValue) string {
	var o struct {
		AttackerUUID string `json:"attacker_uuid"`
	}
	_ = json.Unmarshal([]byte(stringAttr(item, attrObservation)), &o)
	return o.AttackerUUID
}

// encodeCursor writes a scan's LastEvaluatedKey as a JSON object of its
// key attributes, which are strings in both tables.
func encodeCursor(key map[string]types.AttributeValue, inStates bool) (ScanCursor, error) {
	if len(key) == 0 {
		return nil, nil
	}
	flat := make(map[string]string, len(key)+1)
	if inStates {
		flat[cursorTable] = "states"
	}
	for name, v := range key {
		s, ok := v.(*types.AttributeValueMemberS)
		if !ok {
			return nil, fmt.Errorf("scan cursor: key attribute %s is not a string", name)
		}
		flat[name] = s.Value
	}
	return json.Marshal(flat)
}

func decodeCursor(c ScanCursor) (key map[string]types.AttributeValue, inStates bool, err error) {
	if len(c) == 0 {
		return nil, false, nil
	}
	var flat map[string]string
	if err := json.Unmarshal(c, &flat); err != nil {
		return nil, false, fmt.Errorf("scan cursor %s: %w", c, err)
	}
	_, inStates = flat[cursorTable]
	delete(flat, cursorTable)
	if len(flat) == 0 {
		return nil, inStates, nil
	}
	key = make(map[string]types.AttributeValue, len(flat))
	for name, v := range flat {
		key[name] = str(v)
	}
	return key, inStates, nil
}
