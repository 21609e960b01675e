package attribution_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/testrig/conformance"
)

// fuzzSeedMessages returns some real message bodies: the first messages
// of a few stream vectors of each vector file and the bodies of the sample
// SQS events.
func fuzzSeedMessages(tb testing.TB) [][]byte {
	tb.Helper()
	files, err := conformance.Files("-stream.jsonl")
	if err != nil {
		tb.Fatalf("seed messages: %v", err)
	}
	var seeds [][]byte
	for _, name := range files {
		lines, err := conformance.Lines(name)
		if err != nil {
			tb.Fatalf("seed messages: %v", err)
		}
		for _, line := range lines[:min(len(lines), 3)] {
			var v struct {
				Messages []json.RawMessage `json:"messages"`
			}
			if err := json.Unmarshal(line, &v); err != nil {
				tb.Fatalf("%s: %v", name, err)
			}
			for _, m := range v.Messages[:min(len(v.Messages), 8)] {
				seeds = append(seeds, m)
			}
		}
	}
	events, _ := filepath.Glob(filepath.Join("..", "..", "events", "*.json"))
	for _, name := range events {
		b, err := os.ReadFile(name)
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		var ev struct {
			Records []struct {
				Body string `json:"body"`
			} `json:"Records"`
		}
		if json.Unmarshal(b, &ev) != nil {
			continue // not an SQS event
		}
		for _, r := range ev.Records {
			seeds = append(seeds, []byte(r.Body))
		}
	}
	return seeds
}

// FuzzDecodeMessage: any body either decodes, and the observation then
// reads back from its own JSON with the same fingerprint, or fails with
// an invalid-input *attribution.Error naming a field. Never a panic.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range fuzzSeedMessages(f) {
		f.Add(s)
	}
	f.Add([]byte(validEnvelope))
	f.Add([]byte(validEnvelope + `}`))
	f.Add([]byte(`{"detail-type":"x","detail":` + validEnvelope + `}`))
	f.Add([]byte(`{"Type":"Notification","Message":` + string(quoted(validEnvelope)) + `}`))
	f.Add([]byte(`{"Type":"Notification","Message":{}}`))
	f.Add([]byte(`{"primitive":"a.b","value":"<\u2028>","ts":-0,"evidence_ref":"\ufffd","attacker_uuid":"x"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		obs, err := attribution.DecodeMessage(body)
		if err != nil {
			var e *attribution.Error
			if !errors.As(err, &e) || e.Code != attribution.EINVALID || e.Field == "" {
				t.Fatalf("error %v (%T) is not an invalid-input error about a field", err, err)
			}
			return
		}
		for _, kind := range []attribution.Kind{attribution.Categorical, attribution.Numeric, attribution.Hash} {
			if err := obs.Validate(kind); err != nil && attribution.ErrorCode(err) != attribution.EINVALID {
				t.Fatalf("Validate(%s): %v", kind, err)
			}
		}
		again, err := json.Marshal(obs)
		if err != nil {
			t.Fatalf("encode %+v: %v", obs, err)
		}
		back, err := attribution.DecodeMessage(again)
		if err != nil {
			t.Fatalf("re-encoded observation %s does not decode: %v", again, err)
		}
		if back.Fingerprint() != obs.Fingerprint() {
			t.Fatalf("fingerprint changed through JSON:\n %s\n %+v\n %+v", again, obs, back)
		}
	})
}

// FuzzIncremental turns bytes into a small series (kind, thresholds,
// points, arrival order) and checks the incremental record against Merge.
func FuzzIncremental(f *testing.F) {
	f.Add([]byte{0, 5, 1, 1, 2, 2, 3, 1, 4, 2, 5, 1, 6, 2})
	f.Add([]byte{1, 3, 0, 0, 0, 9, 1, 3, 1, 3, 2, 250})
	f.Add([]byte{2, 1, 10, 1, 200, 2, 90, 3, 255, 4, 0, 0})
	f.Add([]byte{2, 7, 1, 1, 1, 2, 1, 3, 1, 4, 1, 5, 1, 6, 1, 7})
	f.Add([]byte{0, 0, 7, 3, 7, 4, 7, 3, 7, 4, 7, 3, 7, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		kind := []attribution.Kind{attribution.Categorical, attribution.Numeric, attribution.Hash}[int(data[0])%3]
		th := attribution.DefaultThresholds()
		if w := int(data[1] % 8); w > 0 { // 0 keeps the defaults
			th.Window, th.CategoricalMajority = w, max(1, w-int(data[1]/8%2))
			th.MinObservations = 1 + int(data[1]/16%3)
			th.HashWindowSeconds = float64(1 + int(data[1])*3)
		}
		values := []string{`"a"`, `"b"`, `null`, `true`, `0`, `-2.5`, `7`, `"7"`}
		var pts []attribution.Point
		rest := data[2:]
		for i := 0; i+1 < len(rest) && len(pts) < 64; i += 2 {
			v := values[int(rest[i+1])%len(values)]
			if kind == attribution.Hash && rest[i+1] > 200 {
				v = fmt.Sprintf(`"h%d"`, rest[i+1])
			}
			pts = append(pts, attribution.Point{TS: float64(rest[i] % 64), Ref: fmt.Sprintf("r%02d", len(pts)), Value: attribution.Value(v)})
		}
		// Arrival order: the bytes' order, which is not series order.
		s := attribution.EmptySeries(kind, th)
		for i, p := range pts {
			s.Add(p)
			if i%5 == 4 {
				s = mustRoundTrip(t, s)
			}
		}
		sorted := append([]attribution.Point(nil), pts...)
		attribution.SortPoints(sorted)
		want := attribution.Merge(kind, sorted, th)
		if !s.Exact() {
			t.Fatalf("a series of %d points is not exact", len(pts))
		}
		if got := s.State(th); got != want {
			t.Fatalf("kind %s, thresholds %+v, points %v:\n State %+v\n Merge %+v", kind, th, pts, got, want)
		}
		if got := attribution.NewSeries(kind, pts, th); !sameSeries(got, s) {
			t.Fatalf("NewSeries %+v, incremental %+v", got, s)
		}
	})
}
