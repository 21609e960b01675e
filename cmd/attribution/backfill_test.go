package main

import (
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/testrig/devstack"
)

// decnetSchema is DECNET's observations table as its SQLModel declares it
// (decnet/web/db/models/observations.py): the BEHAVE envelope flattened,
// plus attacker_uuid.
const decnetSchema = `CREATE TABLE observations (
	id VARCHAR NOT NULL PRIMARY KEY,
	identity_ref VARCHAR,
	primitive VARCHAR NOT NULL,
	value JSON NOT NULL,
	confidence FLOAT NOT NULL,
	window_start_ts FLOAT NOT NULL,
	window_end_ts FLOAT NOT NULL,
	source VARCHAR NOT NULL,
	evidence_ref VARCHAR NOT NULL,
	envelope_v INTEGER NOT NULL,
	ts FLOAT NOT NULL,
	attacker_uuid VARCHAR NOT NULL,
	CONSTRAINT uq_observations_evidence_primitive UNIQUE (evidence_ref, primitive)
)`

func mustDecnetDB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "decnet.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(decnetSchema); err != nil {
		t.Fatal(err)
	}
	rows := []struct {
		id, identityRef, primitive, value string
		ts                                float64
	}{
		{"a1", "", "motor.input_modality", `"typed"`, 1764000000},
		{"a2", "ident-9", "motor.input_modality", `"pasted"`, 1764000100},
		{"a3", "", "toolchain.c2.beacon_interval_ms", `1500.5`, 1764000200},
		{"a4", "", "environmental.locale", `{"lang":"en","tz":"UTC"}`, 1764000300},
		{"a5", "", "toolchain.c2.beacon_interval_ms", `"fast"`, 1764000400}, // numeric primitive, string value: bad
		{"a6", "", "motor.input_modality", `not json`, 1764000500},          // bad
		{"a7", "", "motor.input_modality", `null`, 1764000600},
	}
	for _, r := range rows {
		var ident any
		if r.identityRef != "" {
			ident = r.identityRef
		}
		if _, err := db.Exec(`INSERT INTO observations VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
			r.id, ident, r.primitive, r.value, 0.8, r.ts-30, r.ts, "behave-shell", "shard:d1/ssh/2026-11-30.jsonl#"+r.id, 1, r.ts, "att-bf"); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func TestBackfillFromSQLite(t *testing.T) {
	srv, stack := mustStack(t)
	queue := stack.QueueURL(devstack.ObservationQueueID)
	path := mustDecnetDB(t)
	t.Setenv("OBSERVATION_QUEUE_URL", queue)

	res := runCLI(t, "", "backfill", "--decnet-db", "sqlite:"+path)
	if res.code != 1 {
		t.Fatalf("two bad rows must fail the command: %+v", res)
	}
	for _, want := range []string{
		"row a5: value: toolchain.c2.beacon_interval_ms is numeric",
		"row a6: value: is not valid JSON",
		"backfill: sent 5 of 7 rows of DECNET's observations to " + queue + "; 2 bad, 0 not sent",
	} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
		}
	}
	got := drainBodies(t, srv.Config(), queue)
	if len(got) != 5 {
		t.Fatalf("queue holds %d messages, want 5", len(got))
	}
	byID := map[string]attribution.Observation{}
	for _, body := range got {
		obs, err := attribution.DecodeMessage([]byte(body))
		if err != nil {
			t.Fatalf("a backfilled message the function would refuse: %v\n%s", err, body)
		}
		var probe struct {
			ID          string  `json:"id"`
			IdentityRef *string `json:"identity_ref"`
			V           int     `json:"v"`
		}
		_ = json.Unmarshal([]byte(body), &probe)
		byID[probe.ID] = obs
		if probe.V != 1 {
			t.Errorf("%s: v = %d, want the row's envelope_v", probe.ID, probe.V)
		}
		if (probe.ID == "a2") != (probe.IdentityRef != nil) {
			t.Errorf("%s: identity_ref %v", probe.ID, probe.IdentityRef)
		}
	}
	a4 := byID["a4"]
	if a4.AttackerUUID != "att-bf" || a4.Primitive != "environmental.locale" || a4.TS != 1764000300 ||
		a4.EvidenceRef != "shard:d1/ssh/2026-11-30.jsonl#a4" || mustJSON(t, a4.Value) != `{"lang":"en","tz":"UTC"}` {
		t.Errorf("row a4 became %+v", a4)
	}
	if v := mustJSON(t, byID["a7"].Value); v != "null" {
		t.Errorf("a null value became %s", v)
	}

	// --since keeps the later rows; all valid: exit 0.
	res = runCLI(t, "", "backfill", "--decnet-db", "sqlite://"+path, "--since", "1764000550")
	if res.code != 0 || !strings.Contains(res.stderr, "sent 1 of 1 rows") {
		t.Fatalf("--since: %+v", res)
	}
	if got := drainBodies(t, srv.Config(), queue); len(got) != 1 || !strings.Contains(got[0], `"id":"a7"`) {
		t.Fatalf("--since sent %v", got)
	}
	res = runCLI(t, "", "backfill", "--decnet-db", "sqlite:"+path, "--since", "2025-11-24T16:00:00Z")
	if !strings.Contains(res.stderr, "sent 5 of 7 rows") {
		t.Errorf("--since as RFC 3339 before every row: %+v", res)
	}
	drainBodies(t, srv.Config(), queue)
}

func TestBackfillUsageErrors(t *testing.T) {
	isolateAWS(t)
	t.Setenv("AWS_REGION", "us-east-1")
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"no db":         {[]string{"backfill"}, "--decnet-db URL is required"},
		"bad scheme":    {[]string{"backfill", "--decnet-db", "postgres://x/y", "--queue-url", "q"}, "neither sqlite nor mysql"},
		"bad since":     {[]string{"backfill", "--decnet-db", "sqlite:x.db", "--since", "yesterday"}, "--since"},
		"mysql no host": {[]string{"backfill", "--decnet-db", "mysql:///db"}, "want mysql://"},
	} {
		res := runCLI(t, "", c.args...)
		if res.code != 2 || !strings.Contains(res.stderr, c.want) {
			t.Errorf("%s: %+v, want exit 2 and %q", name, res, c.want)
		}
	}
}
