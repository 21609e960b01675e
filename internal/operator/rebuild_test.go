package operator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
	"decnet-attribution/internal/eventbus"
	"decnet-attribution/internal/operator"
	"decnet-attribution/internal/schema"
	"decnet-attribution/internal/testrig/devstack"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// majority3 is the threshold change the rebuild tests make.
func majority3() attribution.Thresholds {
	th := attribution.DefaultThresholds()
	th.CategoricalMajority = 3
	return th
}

// differs is what a rebuild reports as a change.
func differs(a, b attribution.State) bool {
	return a.State != b.State || a.CurrentValue != b.CurrentValue || a.Confidence != b.Confidence || a.ObservationCount != b.ObservationCount
}

// rebuildCase is a processed stream with the states a replay predicts
// before and after the threshold change.
type rebuildCase struct {
	env     *testEnv
	bodies  [][]byte
	before  map[attribution.SeriesKey]attribution.State
	after   map[attribution.SeriesKey]attribution.State
	changed []attribution.SeriesKey // sorted
}

func mustRebuildCase(tb testing.TB, attackers int) *rebuildCase {
	tb.Helper()
	c := &rebuildCase{env: mustEnv(tb), bodies: testStream(attackers, 8, 5)}
	mustProcess(tb, c.env, c.bodies, attribution.DefaultThresholds())
	c.before = replayStates(tb, c.bodies, attribution.DefaultThresholds())
	c.after = replayStates(tb, c.bodies, majority3())
	for _, k := range sortedKeys(c.after) {
		if differs(c.before[k], c.after[k]) {
			c.changed = append(c.changed, k)
		}
	}
	if len(c.changed) == 0 || len(c.changed) == len(c.after) {
		tb.Fatalf("the threshold change affects %d of %d series: the case does not discriminate", len(c.changed), len(c.after))
	}
	return c
}

func (c *rebuildCase) rebuilder(th attribution.Thresholds) *operator.Rebuilder {
	return &operator.Rebuilder{
		Scanner: c.env.store, ObservationsTable: c.env.tables.Observations, StatesTable: c.env.tables.States,
		Store: c.env.store, Registry: attribution.BuiltinRegistry(), Thresholds: th,
	}
}

// changeLog collects OnChange calls.
type changeLog struct {
	mu      sync.Mutex
	changes map[attribution.SeriesKey]operator.Change
}

func (l *changeLog) add(c operator.Change) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changes == nil {
		l.changes = map[attribution.SeriesKey]operator.Change{}
	}
	l.changes[c.Key] = c
}

func (l *changeLog) keys() []attribution.SeriesKey { return sortedKeys(l.changes) }

// checkChanges compares reported changes with the predicted ones.
func (c *rebuildCase) checkChanges(tb testing.TB, name string, log *changeLog) {
	tb.Helper()
	if got := log.keys(); !slices.Equal(got, c.changed) {
		tb.Fatalf("%s: changed series %v, replay predicts %v", name, got, c.changed)
	}
	for k, ch := range log.changes {
		if ch.Old == nil || !sameState(*ch.Old, c.before[k]) || !sameState(ch.New, c.after[k]) {
			tb.Errorf("%s: %s: reported %v → %v, replay %v → %v", name, k, ch.Old, ch.New, c.before[k], c.after[k])
		}
		if ch.Transition != (c.before[k].State != c.after[k].State) {
			tb.Errorf("%s: %s: transition %v for %s → %s", name, k, ch.Transition, c.before[k].State, c.after[k].State)
		}
		if !strings.Contains(ch.String(), c.before[k].State+" → "+c.after[k].State) {
			tb.Errorf("%s: change reads %q", name, ch.String())
		}
	}
}

// checkTable compares the states table with the expected states, and
// checks that what an outbox still holds the bus took (the series' next
// commit acknowledges it).
func (c *rebuildCase) checkTable(tb testing.TB, name string, want map[attribution.SeriesKey]attribution.State) map[attribution.SeriesKey]*attribution.SeriesRecord {
	tb.Helper()
	recs := tableStates(tb, c.env, sortedKeys(want))
	for k, w := range want {
		if got := *recs[k].Current; !sameState(got, w) {
			tb.Errorf("%s: %s: table %+v, want %+v", name, k, got, w)
		}
		for _, e := range recs[k].Pending() {
			if _, took := busTook.Load(e.ID); !took {
				tb.Errorf("%s: %s: event %s left in the outbox, never published", name, k, e.ID)
			}
		}
	}
	return recs
}

// checkFlags checks each identity record flags exactly its multi_actor
// primitives.
func (c *rebuildCase) checkFlags(tb testing.TB, name string, want map[attribution.SeriesKey]attribution.State) {
	tb.Helper()
	flagged := map[string][]string{}
	for _, k := range sortedKeys(want) {
		if want[k].State == attribution.StateMultiActor {
			flagged[k.IdentityUUID] = append(flagged[k.IdentityUUID], k.Primitive)
		} else if _, ok := flagged[k.IdentityUUID]; !ok {
			flagged[k.IdentityUUID] = nil
		}
	}
	for id, prims := range flagged {
		rec, err := c.env.store.LoadIdentity(context.Background(), id, true)
		if err != nil {
			tb.Fatal(err)
		}
		if !slices.Equal(rec.Flagged, prims) {
			tb.Errorf("%s: identity %s flags %v, its states say %v", name, id, rec.Flagged, prims)
		}
	}
}

func TestRebuildAfterThresholdChange(t *testing.T) {
	t.Parallel()
	c := mustRebuildCase(t, 2)
	tap := mustBusQueue(t, c.env)
	ctx := context.Background()
	versions := map[attribution.SeriesKey]int64{}
	for k, rec := range tableStates(t, c.env, sortedKeys(c.before)) {
		versions[k] = rec.Version
	}

	// Dry run: reports exactly the predicted changes, writes nothing.
	dry := &changeLog{}
	r := c.rebuilder(majority3())
	r.DryRun, r.OnChange = true, dry.add
	r.Checkpoint = filepath.Join(t.TempDir(), "unused.json")
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.checkChanges(t, "dry run", dry)
	// Scanned counts observation items; the records hold the rest inline.
	count, err := c.env.ddb.Scan(ctx, &dynamodb.ScanInput{TableName: &c.env.tables.Observations, Select: types.SelectCount})
	if err != nil {
		t.Fatal(err)
	}
	if res.Series != len(c.after) || res.Changed != len(c.changed) || res.Scanned != int64(count.Count) {
		t.Fatalf("dry run result %+v; want %d series, %d changed, %d items", res, len(c.after), len(c.changed), count.Count)
	}
	for k, rec := range c.checkTable(t, "after the dry run", c.before) {
		if rec.Version != versions[k] {
			t.Errorf("%s: the dry run wrote the record (version %d → %d)", k, versions[k], rec.Version)
		}
	}
	if _, err := os.Stat(r.Checkpoint); !os.IsNotExist(err) {
		t.Fatalf("the dry run wrote a checkpoint (%v)", err)
	}

	// The rebuild itself, without --emit.
	real := &changeLog{}
	r = c.rebuilder(majority3())
	r.OnChange = real.add
	r.Checkpoint = filepath.Join(t.TempDir(), "rebuild.json")
	res, err = r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.checkChanges(t, "rebuild", real)
	if res.Series != len(c.after) || res.Changed != len(c.changed) || res.Published != 0 || len(res.Failures) != 0 || res.Resumed {
		t.Fatalf("rebuild result %+v", res)
	}
	recs := c.checkTable(t, "after the rebuild", c.after)
	c.checkFlags(t, "after the rebuild", c.after)
	for k, rec := range recs {
		if !rec.Series.Compatible(attribution.BuiltinRegistry().Kind(k.Primitive), majority3()) {
			t.Errorf("%s: series record not rebuilt for the new window", k)
		}
		if d := c.before[k].State != c.after[k].State; d && rec.LastChangeTS != c.after[k].LastObservationTS {
			t.Errorf("%s: stable since %v, want the last observation %v", k, rec.LastChangeTS, c.after[k].LastObservationTS)
		}
	}
	if _, err := os.Stat(r.Checkpoint); !os.IsNotExist(err) {
		t.Fatalf("a complete rebuild left its checkpoint (%v)", err)
	}
	if events := tap.drain(t); len(events) != 0 {
		t.Fatalf("without emit the bus got %d events", len(events))
	}

	// Again with the same thresholds: nothing changes, nothing is written.
	again := &changeLog{}
	r.OnChange = again.add
	if res, err = r.Run(ctx); err != nil || res.Changed != 0 || len(again.changes) != 0 {
		t.Fatalf("second rebuild: %+v, %v", res, err)
	}
	for k, rec := range tableStates(t, c.env, sortedKeys(c.after)) {
		if rec.Version != recs[k].Version {
			t.Errorf("%s: rewritten (version %d → %d) though nothing changed", k, recs[k].Version, rec.Version)
		}
	}
}

func TestRebuildEmitPublishesTheTransitions(t *testing.T) {
	t.Parallel()
	c := mustRebuildCase(t, 2)
	tap := mustBusQueue(t, c.env)
	bus := c.env.stack.BusName(devstack.AttributionBusID)
	pub, err := eventbus.New(c.env.eb, eventbus.Config{BusName: bus})
	if err != nil {
		t.Fatal(err)
	}
	log := &changeLog{}
	r := c.rebuilder(majority3())
	r.Publisher, r.EventBus, r.OnChange = pub, bus, log.add
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.checkChanges(t, "emit", log)
	c.checkTable(t, "after emit", c.after)
	c.checkFlags(t, "after emit", c.after)

	v, err := schema.New()
	if err != nil {
		t.Fatal(err)
	}
	var transitions []string
	for k, ch := range log.changes {
		if ch.Transition {
			transitions = append(transitions, k.String()+" "+c.before[k].State+" "+c.after[k].State)
		}
	}
	var got []string
	suspicions := 0
	for _, ev := range tap.drain(t) {
		if err := v.Detail(ev.DetailType, ev.Detail); err != nil || ev.Source != attribution.EventSource {
			t.Errorf("event %s from %s: %v", ev.Detail, ev.Source, err)
		}
		if ev.DetailType == attribution.EventMultiActorSuspected {
			suspicions++
			continue
		}
		var d attribution.StateChanged
		if err := json.Unmarshal(ev.Detail, &d); err != nil || d.OldState == nil {
			t.Fatalf("detail %s: %v", ev.Detail, err)
		}
		key := attribution.SeriesKey{IdentityUUID: d.IdentityUUID, Primitive: d.Primitive}
		got = append(got, key.String()+" "+*d.OldState+" "+d.NewState)
		if d.ObservationCount != c.after[key].ObservationCount || d.TS != c.after[key].LastObservationTS {
			t.Errorf("%s: detail %s", key, ev.Detail)
		}
	}
	slices.Sort(got)
	slices.Sort(transitions)
	if len(transitions) == 0 || !slices.Equal(got, transitions) {
		t.Fatalf("bus got %v, want the transitions %v", got, transitions)
	}
	if suspicions != res.Suspicions || res.Published != len(got)+suspicions || res.Transitions != len(transitions) {
		t.Fatalf("result %+v; bus got %d transitions, %d suspicions", res, len(got), suspicions)
	}
}

func TestRebuildResumesFromItsCheckpoint(t *testing.T) {
	t.Parallel()
	c := mustRebuildCase(t, 2)
	path := filepath.Join(t.TempDir(), "rebuild.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := c.rebuilder(majority3())
	r.Segments, r.PageSize, r.Checkpoint = 2, 5, path
	r.OnProgress = func(p operator.RebuildProgress) {
		if p.Series >= 4 {
			cancel()
		}
	}
	first, err := r.Run(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %+v, %v", first, err)
	}
	if first.Series < 4 || first.Series >= len(c.after) {
		t.Fatalf("interrupted run rebuilt %d of %d series", first.Series, len(c.after))
	}
	var saved struct {
		Segments []json.RawMessage `json:"segments"`
		Done     []string          `json:"done"`
	}
	data, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(data, &saved) != nil || len(saved.Segments) != 2 || len(saved.Done) != first.Series {
		t.Fatalf("checkpoint %s (%v): want 2 segments and the %d series done", data, err, first.Series)
	}

	// A rerun must use the same segments and settings.
	other := c.rebuilder(attribution.DefaultThresholds())
	other.Segments, other.Checkpoint = 2, path
	if _, err := other.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "thresholds") {
		t.Fatalf("resume with other thresholds: %v", err)
	}
	other = c.rebuilder(majority3())
	other.Segments, other.Checkpoint = 3, path
	if _, err := other.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "--segments 2") {
		t.Fatalf("resume with other segments: %v", err)
	}

	log := &changeLog{}
	r = c.rebuilder(majority3())
	r.Segments, r.PageSize, r.Checkpoint, r.OnChange = 2, 5, path, log.add
	second, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !second.Resumed || second.AlreadyDone != first.Series || second.Series+second.AlreadyDone != len(c.after) {
		t.Fatalf("resumed run %+v after %d series; want the other %d", second, first.Series, len(c.after)-first.Series)
	}
	for k := range log.changes {
		if slices.Contains(saved.Done, k.String()) {
			t.Errorf("%s was rebuilt again", k)
		}
	}
	c.checkTable(t, "after resuming", c.after)
	c.checkFlags(t, "after resuming", c.after)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the completed rebuild left its checkpoint (%v)", err)
	}
}

func TestRebuildReportsSeriesThatNoLongerFit(t *testing.T) {
	t.Parallel()
	e := mustEnv(t)
	bodies := testStream(2, 4, 9)
	mustProcess(t, e, bodies, attribution.DefaultThresholds())
	reg, err := attribution.BuiltinRegistry().WithOverrides([]byte(`{"motor.input_modality":"numeric"}`))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rebuild.json")
	r := &operator.Rebuilder{
		Scanner: e.store, ObservationsTable: e.tables.Observations, StatesTable: e.tables.States,
		Store: e.store, Registry: reg, Thresholds: attribution.DefaultThresholds(), Checkpoint: path,
	}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) != 2 || res.Series != 6 {
		t.Fatalf("result %+v: want the 2 input_modality series failed, the 6 others rebuilt", res)
	}
	for _, f := range res.Failures {
		if f.Key.Primitive != "motor.input_modality" || attribution.ErrorCode(f.Err) != attribution.EINVALID || !strings.Contains(f.String(), "numeric") {
			t.Errorf("failure %s (code %s)", f, attribution.ErrorCode(f.Err))
		}
	}
	data, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(data), `"failed"`) {
		t.Fatalf("checkpoint kept for the failed series? %s (%v)", data, err)
	}
	// A rerun tries the failed series again (and only those).
	res, err = r.Run(context.Background())
	if err != nil || !res.Resumed || res.Series != 0 || len(res.Failures) != 2 || res.Scanned != 0 {
		t.Fatalf("rerun: %+v, %v", res, err)
	}
}

func TestRebuildStopsOnMissingTable(t *testing.T) {
	t.Parallel()
	e := mustEnv(t)
	tables := e.tables
	tables.Observations = "no-such-table"
	r := &operator.Rebuilder{
		Scanner: ddbstore.New(e.ddb, tables, 0), ObservationsTable: "no-such-table", Store: e.store,
		Registry: attribution.BuiltinRegistry(), Thresholds: attribution.DefaultThresholds(),
	}
	_, err := r.Run(context.Background())
	var missing *operator.MissingResourceError
	if !errors.As(err, &missing) || missing.Name != "no-such-table" || missing.Kind != "table" {
		t.Fatalf("error %v", err)
	}
}

// interferingStore lets the function write an observation of the series
// being rebuilt just before the rebuild's first commit.
type interferingStore struct {
	attribution.Store
	once      sync.Once
	interfere func(c *attribution.Commit)
	mu        sync.Mutex
	conflicts int
}

func (s *interferingStore) Commit(ctx context.Context, c *attribution.Commit) error {
	s.once.Do(func() { s.interfere(c) })
	err := s.Store.Commit(ctx, c)
	if errors.Is(err, attribution.ErrVersionConflict) {
		s.mu.Lock()
		s.conflicts++
		s.mu.Unlock()
	}
	return err
}

func TestRebuildRetriesWhenTheFunctionWritesMeanwhile(t *testing.T) {
	t.Parallel()
	e := mustEnv(t)
	bodies := testStream(1, 6, 21)
	mustProcess(t, e, bodies, attribution.DefaultThresholds())
	var extra []byte
	var interfereErr error
	store := &interferingStore{Store: e.store}
	store.interfere = func(c *attribution.Commit) { // on a segment's goroutine: no t.Fatal here
		rec := c.Series[0]
		extra, _ = json.Marshal(map[string]any{
			"attacker_uuid": rec.AttackerUUID, "primitive": rec.Key.Primitive, "evidence_ref": "late",
			"ts": rec.Current.LastObservationTS + 10, "value": map[bool]any{true: 31000, false: "pasted"}[rec.Key.Primitive == "toolchain.c2.beacon_interval_ms"],
		})
		p := &attribution.Processor{Store: e.store, Identities: e.store, Publisher: &recorder{},
			Registry: attribution.BuiltinRegistry(), Thresholds: attribution.DefaultThresholds(),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		interfereErr = p.Process(context.Background(), []attribution.Message{{ID: "late", Body: extra}})[0]
	}
	r := &operator.Rebuilder{
		Scanner: e.store, ObservationsTable: e.tables.Observations, StatesTable: e.tables.States,
		Store: store, Identities: e.store, Registry: attribution.BuiltinRegistry(), Thresholds: majority3(), Segments: 1,
		Sleep: func(context.Context, time.Duration) error { return nil },
	}
	res, err := r.Run(context.Background())
	if err != nil || len(res.Failures) != 0 {
		t.Fatalf("%+v, %v", res, err)
	}
	if interfereErr != nil {
		t.Fatal(interfereErr)
	}
	if store.conflicts == 0 || extra == nil {
		t.Fatal("the concurrent write caused no conflict: the test does not test the retry")
	}
	want := replayStates(t, append(bodies, extra), majority3())
	c := &rebuildCase{env: e}
	c.checkTable(t, "after a conflict", want)
	c.checkFlags(t, "after a conflict", want)
}

// TestRebuildPerCanonicalIdentity: DECNET merged three attackers' identities
// (a chain id-c → id-b → id-a); a threshold change then rebuilds id-a's
// series from the union of the three attackers' observations, as the
// replay with the new threshold computes them, and leaves the records of
// the retired identities (the stubs, id-b, id-c) frozen.
func TestRebuildPerCanonicalIdentity(t *testing.T) {
	t.Parallel()
	e := mustEnv(t)
	envelope := func(id, topic string, ts int, payload string) []byte {
		return fmt.Appendf(nil, `{"v":1,"id":%q,"topic":%q,"ts":%d,"payload":%s}`, id, topic, ts, payload)
	}
	bodies := append(testStream(3, 8, 5),
		envelope("e1", attribution.TopicIdentityFormed, 1, `{"identity_uuid":"id-c","observation_uuids":["att-1"]}`),
		envelope("e2", attribution.TopicIdentityFormed, 2, `{"identity_uuid":"id-b","observation_uuids":["att-0"]}`),
		envelope("e3", attribution.TopicIdentityMerged, 3, `{"winner_uuid":"id-b","loser_uuid":"id-c"}`),
		envelope("e4", attribution.TopicIdentityFormed, 4, `{"identity_uuid":"id-a","observation_uuids":["att-2"]}`),
		envelope("e5", attribution.TopicIdentityMerged, 5, `{"winner_uuid":"id-a","loser_uuid":"id-b"}`),
	)
	mustProcess(t, e, bodies, attribution.DefaultThresholds())
	before := replayStates(t, bodies, attribution.DefaultThresholds())
	after := replayStates(t, bodies, majority3())
	changed := 0
	for k := range after {
		if k.IdentityUUID != "id-a" {
			t.Fatalf("replay state of %s: every attacker should resolve to id-a", k)
		}
		if differs(before[k], after[k]) {
			changed++
		}
	}
	if len(after) != 4 || changed == 0 {
		t.Fatalf("%d canonical series, %d changed by the threshold: the test does not discriminate", len(after), changed)
	}
	ctx := context.Background()
	retired := []string{"id-b", "id-c"}
	for a := range 3 {
		retired = append(retired, attribution.StubIdentityID(fmt.Sprint("att-", a)))
	}
	frozen := map[attribution.SeriesKey]int64{}
	for _, id := range retired {
		recs, err := e.store.LoadIdentitySeries(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for p, r := range recs {
			frozen[attribution.SeriesKey{IdentityUUID: id, Primitive: p}] = r.Version
		}
	}
	if len(frozen) == 0 {
		t.Fatal("no frozen record: the stubs' series should stay behind, frozen")
	}

	log := &changeLog{}
	r := &operator.Rebuilder{
		Scanner: e.store, ObservationsTable: e.tables.Observations, StatesTable: e.tables.States,
		Store: e.store, Registry: attribution.BuiltinRegistry(), Thresholds: majority3(), OnChange: log.add,
	}
	res, err := r.Run(ctx)
	if err != nil || len(res.Failures) != 0 {
		t.Fatalf("%+v, %v", res, err)
	}
	if res.Series != 4 || res.Changed != changed {
		t.Errorf("result %+v: want the 4 series of id-a, %d changed", res, changed)
	}
	for k := range log.changes {
		if k.IdentityUUID != "id-a" {
			t.Errorf("change reported for %s, not a canonical series", k)
		}
	}
	c := &rebuildCase{env: e}
	c.checkTable(t, "after the rebuild", after)
	c.checkFlags(t, "after the rebuild", after)
	for k, v := range frozen {
		recs, err := e.store.LoadSeries(ctx, k.IdentityUUID, []string{k.Primitive}, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := recs[k.Primitive].Version; got != v {
			t.Errorf("%s: a retired identity's record was rewritten (version %d → %d)", k, v, got)
		}
	}
}
