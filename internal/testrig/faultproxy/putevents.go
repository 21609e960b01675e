package faultproxy

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// failedEntry is the result reported for an entry the injector failed.
var failedEntry = json.RawMessage(`{"ErrorCode":"InternalFailure","ErrorMessage":"entry failed (injected by faultproxy)"}`)

// entryPlan records which entries of a PutEvents request the injector fails.
type entryPlan struct {
	failed []bool // per original entry
	nFail  int
}

// planPutEvents draws, for each entry of a PutEvents request body, whether it
// fails, and returns the plan and the body to forward (holding only the
// surviving entries). It returns a nil plan when no entry fails or the body
// is not a PutEvents request it can read; the body is then forwarded as is.
func planPutEvents(body []byte, rate float64, d *draws) (*entryPlan, []byte, error) {
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, body, nil
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(req["Entries"], &entries); err != nil || len(entries) == 0 {
		return nil, body, nil
	}
	plan := &entryPlan{failed: make([]bool, len(entries))}
	kept := make([]json.RawMessage, 0, len(entries))
	for i, e := range entries {
		if d.float() < rate {
			plan.failed[i] = true
			plan.nFail++
			continue
		}
		kept = append(kept, e)
	}
	if plan.nFail == 0 {
		return nil, body, nil
	}
	keptJSON, err := json.Marshal(kept)
	if err != nil {
		return nil, nil, fmt.Errorf("encode surviving PutEvents entries: %w", err)
	}
	req["Entries"] = keptJSON
	out, err := json.Marshal(req)
	if err != nil {
		return nil, nil, fmt.Errorf("encode PutEvents request: %w", err)
	}
	return plan, out, nil
}

// allFailed reports whether no entry survives, so nothing is forwarded.
func (p *entryPlan) allFailed() bool { return p.nFail == len(p.failed) }

// merge rebuilds the PutEvents response for the original request from the
// upstream's response to the surviving entries (nil when nothing was
// forwarded).
func (p *entryPlan) merge(upstream []byte) ([]byte, error) {
	resp := map[string]json.RawMessage{}
	var got []json.RawMessage
	upstreamFailed := 0
	if upstream != nil {
		if err := json.Unmarshal(upstream, &resp); err != nil {
			return nil, fmt.Errorf("decode upstream PutEvents response: %w", err)
		}
		if err := json.Unmarshal(resp["Entries"], &got); err != nil {
			return nil, fmt.Errorf("decode upstream PutEvents entries: %w", err)
		}
		if raw, ok := resp["FailedEntryCount"]; ok {
			if err := json.Unmarshal(raw, &upstreamFailed); err != nil {
				return nil, fmt.Errorf("decode upstream FailedEntryCount: %w", err)
			}
		}
	}
	if want := len(p.failed) - p.nFail; len(got) != want {
		return nil, fmt.Errorf("upstream PutEvents response has %d entries, want %d", len(got), want)
	}
	entries := make([]json.RawMessage, len(p.failed))
	next := 0
	for i, failed := range p.failed {
		if failed {
			entries[i] = failedEntry
			continue
		}
		entries[i] = got[next]
		next++
	}
	entriesJSON, err := json.Marshal(entries)
	if err != nil {
		return nil, fmt.Errorf("encode merged PutEvents entries: %w", err)
	}
	resp["Entries"] = entriesJSON
	resp["FailedEntryCount"] = json.RawMessage(strconv.Itoa(upstreamFailed + p.nFail))
	out, err := json.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("encode merged PutEvents response: %w", err)
	}
	return out, nil
}
