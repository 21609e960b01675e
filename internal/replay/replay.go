// Package replay runs a stream of observation messages through the
// attribution processor in memory and writes the transitions and final
// states as JSON Lines. It is the calibration and backfill tool's engine and
// the contract the conformance checks use.
package replay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

// Options configure a replay.
type Options struct {
	Registry   attribution.Registry
	Thresholds attribution.Thresholds
	// FullRecompute uses the whole-series merger for every observation.
	FullRecompute bool
}

// Result summarises a replay.
type Result struct {
	Lines       int // non-blank input lines
	BadLines    int
	Transitions int
	Suspicions  int
	Rekeyed     int
}

// Run reads messages (one JSON object per line, in arrival order) from in,
// writes one line per event to out as it is emitted, then one state line per
// series sorted by attacker and primitive. A bad line is reported on errOut
// with its number and reason and skipped.
func Run(ctx context.Context, in io.Reader, out, errOut io.Writer, opts Options) (Result, error) {
	var res Result
	store := memstore.New()
	w := bufio.NewWriter(out)
	pub := &linePublisher{enc: json.NewEncoder(w), res: &res, seen: make(map[string]bool)}
	proc := &attribution.Processor{
		Store:         store,
		Identities:    store,
		Publisher:     pub,
		Registry:      opts.Registry,
		Thresholds:    opts.Thresholds,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		FullRecompute: opts.FullRecompute,
		Concurrency:   1,
	}
	r := bufio.NewReaderSize(in, 64*1024)
	for lineNo := 1; ; lineNo++ {
		line, readErr := r.ReadBytes('\n')
		if readErr != nil && !errors.Is(readErr, io.EOF) {
			return res, fmt.Errorf("read line %d: %w", lineNo, readErr)
		}
		if body := bytes.TrimSpace(line); len(body) > 0 {
			res.Lines++
			if err := proc.Process(ctx, []attribution.Message{{ID: fmt.Sprint("line-", lineNo), Body: body}})[0]; err != nil {
				res.BadLines++
				fmt.Fprintf(errOut, "line %d: %v\n", lineNo, err)
			}
			if pub.err != nil {
				return res, pub.err
			}
		}
		if readErr != nil {
			break
		}
	}
	if err := writeStates(pub.enc, store); err != nil {
		return res, err
	}
	return res, w.Flush()
}

// writeStates writes one line per series of a canonical identity with
// attackers, sorted by attacker_uuid (null first), identity and primitive.
// The series of identities that stopped being canonical are not states.
func writeStates(enc *json.Encoder, store *memstore.Store) error {
	identities := store.IdentityRecords()
	var lines []stateLine
	for _, rec := range store.Records() {
		if rec.Current == nil {
			continue
		}
		id := rec.Key.IdentityUUID
		node := identities[id]
		if node == nil {
			node = &attribution.IdentityRecord{}
		}
		if node.Parent != "" {
			continue
		}
		attackers := node.EffectiveMembers(id, rec.AttackerUUID)
		if len(attackers) == 0 {
			continue
		}
		var single *string
		if len(attackers) == 1 && attribution.StubIdentityID(attackers[0]) == id {
			single = &attackers[0]
		}
		lines = append(lines, stateLine{
			Type:              "state",
			AttackerUUID:      single,
			IdentityUUID:      id,
			Attackers:         attackers,
			Primitive:         rec.Key.Primitive,
			State:             rec.Current.State,
			CurrentValue:      rec.Current.CurrentValue,
			Confidence:        rec.Current.Confidence,
			ObservationCount:  rec.Current.ObservationCount,
			LastChangeTS:      rec.LastChangeTS,
			LastObservationTS: rec.Current.LastObservationTS,
		})
	}
	deref := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	sort.SliceStable(lines, func(i, j int) bool {
		a, b := lines[i], lines[j]
		if deref(a.AttackerUUID) != deref(b.AttackerUUID) {
			return deref(a.AttackerUUID) < deref(b.AttackerUUID)
		}
		if a.IdentityUUID != b.IdentityUUID {
			return a.IdentityUUID < b.IdentityUUID
		}
		return a.Primitive < b.Primitive
	})
	for _, l := range lines {
		if err := enc.Encode(l); err != nil {
			return fmt.Errorf("write state: %w", err)
		}
	}
	return nil
}

type stateLine struct {
	Type string `json:"type"`
	// AttackerUUID is the single attacker of a provisional (stub) identity;
	// null for one of DECNET's identities.
	AttackerUUID      *string           `json:"attacker_uuid"`
	IdentityUUID      string            `json:"identity_uuid"`
	Attackers         []string          `json:"attackers"`
	Primitive         string            `json:"primitive"`
	State             string            `json:"state"`
	CurrentValue      attribution.Value `json:"current_value"`
	Confidence        float64           `json:"confidence"`
	ObservationCount  int               `json:"observation_count"`
	LastChangeTS      float64           `json:"last_change_ts"`
	LastObservationTS float64           `json:"last_observation_ts"`
}

type stateChangedLine struct {
	Type             string            `json:"type"`
	AttackerUUID     string            `json:"attacker_uuid"`
	IdentityUUID     string            `json:"identity_uuid"`
	Primitive        string            `json:"primitive"`
	OldState         *string           `json:"old_state"`
	NewState         string            `json:"new_state"`
	CurrentValue     attribution.Value `json:"current_value"`
	Confidence       float64           `json:"confidence"`
	ObservationCount int               `json:"observation_count"`
	TS               float64           `json:"ts"`
}

type suspectedLine struct {
	Type            string   `json:"type"`
	AttackerUUID    string   `json:"attacker_uuid"`
	IdentityUUID    string   `json:"identity_uuid"`
	Primitives      []string `json:"primitives"`
	EvidenceSummary string   `json:"evidence_summary"`
	Confidence      float64  `json:"confidence"`
	TS              float64  `json:"ts"`
}

type rekeyedLine struct {
	Type         string   `json:"type"`
	IdentityUUID string   `json:"identity_uuid"`
	Into         string   `json:"into"`
	Primitives   []string `json:"primitives"`
	Cause        string   `json:"cause"`
	TS           float64  `json:"ts"`
}

// linePublisher writes each event as a line the moment it is first
// published. A redelivered observation publishes its events again with
// the same IDs; like a consumer, the replay prints them once.
type linePublisher struct {
	enc  *json.Encoder
	res  *Result
	err  error
	seen map[string]bool
}

func (p *linePublisher) Publish(_ context.Context, events []attribution.Event) error {
	for _, e := range events {
		if p.seen[e.ID] {
			continue
		}
		var line any
		switch e.DetailType {
		case attribution.EventStateChanged:
			var d attribution.StateChanged
			if err := json.Unmarshal(e.Detail, &d); err != nil {
				return p.fail(err)
			}
			p.res.Transitions++
			line = stateChangedLine{
				Type: e.DetailType, AttackerUUID: d.AttackerUUID, IdentityUUID: d.IdentityUUID,
				Primitive: d.Primitive, OldState: d.OldState, NewState: d.NewState,
				CurrentValue: d.CurrentValue, Confidence: d.Confidence,
				ObservationCount: d.ObservationCount, TS: d.TS,
			}
		case attribution.EventMultiActorSuspected:
			var d attribution.MultiActorSuspected
			if err := json.Unmarshal(e.Detail, &d); err != nil {
				return p.fail(err)
			}
			p.res.Suspicions++
			line = suspectedLine{
				Type: e.DetailType, AttackerUUID: d.AttackerUUID, IdentityUUID: d.IdentityUUID,
				Primitives: d.Primitives, EvidenceSummary: d.EvidenceSummary,
				Confidence: d.Confidence, TS: d.TS,
			}
		case attribution.EventIdentityRekeyed:
			var d attribution.IdentityRekeyed
			if err := json.Unmarshal(e.Detail, &d); err != nil {
				return p.fail(err)
			}
			p.res.Rekeyed++
			line = rekeyedLine{
				Type: e.DetailType, IdentityUUID: d.IdentityUUID, Into: d.Into,
				Primitives: d.Primitives, Cause: d.Cause, TS: d.TS,
			}
		default:
			return p.fail(fmt.Errorf("unknown event type %q", e.DetailType))
		}
		if err := p.enc.Encode(line); err != nil {
			return p.fail(err)
		}
		p.seen[e.ID] = true
	}
	return nil
}

func (p *linePublisher) fail(err error) error {
	p.err = fmt.Errorf("write event: %w", err)
	return p.err
}
