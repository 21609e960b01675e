package faultproxy

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

func TestPlanPutEventsLeavesUnreadableBodiesAlone(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{name: "not JSON", body: `{"Entries": [`},
		{name: "not an object", body: `[1, 2]`},
		{name: "no entries", body: `{"EndpointId": "x"}`},
		{name: "entries not a list", body: `{"Entries": {"a": 1}}`},
		{name: "empty entries", body: `{"Entries": []}`},
		{name: "null entries", body: `{"Entries": null}`},
		{name: "empty body", body: ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, out, err := planPutEvents([]byte(tt.body), 1, newDraws(1, putEvents, 0))
			if err != nil || plan != nil || string(out) != tt.body {
				t.Errorf("planPutEvents = %v, %q, %v; want no plan and the body unchanged", plan, out, err)
			}
		})
	}
}

func TestPlanAndMergeKeepOriginalOrder(t *testing.T) {
	body := `{"EndpointId":"ep","Entries":[{"Source":"a"},{"Source":"b"},{"Source":"c"},{"Source":"d"}]}`
	// Find a seed that fails some but not all entries, so the test does not
	// depend on one particular stream.
	var plan *entryPlan
	var forwarded []byte
	for seed := int64(0); plan == nil || plan.allFailed(); seed++ {
		var err error
		plan, forwarded, err = planPutEvents([]byte(body), 0.5, newDraws(seed, putEvents, 0))
		if err != nil {
			t.Fatalf("plan: %v", err)
		}
	}

	var req struct {
		EndpointId string
		Entries    []struct{ Source string }
	}
	if err := json.Unmarshal(forwarded, &req); err != nil {
		t.Fatalf("forwarded body %s: %v", forwarded, err)
	}
	if req.EndpointId != "ep" {
		t.Errorf("forwarded body lost EndpointId: %s", forwarded)
	}
	var kept []string
	for i, src := range []string{"a", "b", "c", "d"} {
		if !plan.failed[i] {
			kept = append(kept, src)
		}
	}
	var gotKept []string
	upstreamEntries := make([]string, 0, len(req.Entries))
	for _, e := range req.Entries {
		gotKept = append(gotKept, e.Source)
		// The upstream fails entry "c" itself, if it is forwarded.
		if e.Source == "c" {
			upstreamEntries = append(upstreamEntries, `{"ErrorCode":"InvalidArgument","ErrorMessage":"no"}`)
		} else {
			upstreamEntries = append(upstreamEntries, `{"EventId":"id-`+e.Source+`"}`)
		}
	}
	if strings.Join(gotKept, ",") != strings.Join(kept, ",") {
		t.Fatalf("forwarded entries %v, want %v", gotKept, kept)
	}
	upstreamFailed := 0
	if !plan.failed[2] {
		upstreamFailed = 1
	}
	upstream := `{"FailedEntryCount":` + strconv.Itoa(upstreamFailed) +
		`,"Entries":[` + strings.Join(upstreamEntries, ",") + `]}`

	merged, err := plan.merge([]byte(upstream))
	if err != nil {
		t.Fatalf("merge: %v", err)
	}
	var resp struct {
		FailedEntryCount int
		Entries          []struct{ EventId, ErrorCode string }
	}
	if err := json.Unmarshal(merged, &resp); err != nil {
		t.Fatalf("merged body %s: %v", merged, err)
	}
	if len(resp.Entries) != 4 {
		t.Fatalf("merged %d entries, want 4: %s", len(resp.Entries), merged)
	}
	for i, src := range []string{"a", "b", "c", "d"} {
		e := resp.Entries[i]
		switch {
		case plan.failed[i]:
			if e.ErrorCode != "InternalFailure" {
				t.Errorf("entry %s: %+v, want the injected InternalFailure", src, e)
			}
		case src == "c":
			if e.ErrorCode != "InvalidArgument" {
				t.Errorf("entry c: %+v, want the upstream's own failure", e)
			}
		default:
			if e.EventId != "id-"+src {
				t.Errorf("entry %s: %+v, want event id id-%s", src, e, src)
			}
		}
	}
	if want := plan.nFail + upstreamFailed; resp.FailedEntryCount != want {
		t.Errorf("FailedEntryCount = %d, want %d", resp.FailedEntryCount, want)
	}
}

func TestMergeRejectsMismatchedUpstreamResponses(t *testing.T) {
	plan := &entryPlan{failed: []bool{true, false, false}, nFail: 1}
	for _, upstream := range []string{
		`{"FailedEntryCount":0,"Entries":[{"EventId":"x"}]}`,
		`{"FailedEntryCount":0,"Entries":[{"EventId":"x"},{"EventId":"y"},{"EventId":"z"}]}`,
		`{"FailedEntryCount":"zero","Entries":[{"EventId":"x"},{"EventId":"y"}]}`,
		`{"FailedEntryCount":0}`,
		`not JSON`,
	} {
		if out, err := plan.merge([]byte(upstream)); err == nil {
			t.Errorf("merge(%s) = %s, want an error", upstream, out)
		}
	}
}
