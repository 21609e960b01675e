package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
	"decnet-attribution/internal/operator"
)

const stateDescription = `Shows the states the engine holds about one identity, named directly
(--identity) or through one of its attackers (--attacker, resolved in the
identities table). An identity merged into another shows the canonical
identity at the end of its merge chain: first the chain (the identity
asked about, or the attacker's literal identity, to the canonical one) and
the canonical identity's attackers, then one row per primitive with the
state word, the current value, the confidence, the observation count,
"stable since" (when the state word last changed) and the last
observation, times in UTC as RFC 3339 and relative to now. A footer names
the primitives the identity record holds in multi_actor, and the events
still waiting to be published, if any.

With --json, writes JSON Lines instead: one line per primitive,
  {"type":"state","identity_uuid","attacker_uuid","primitive","state",
   "current_value","confidence","observation_count","last_change_ts",
   "last_observation_ts","transitions","pending_events"}
then one line about the identity,
  {"type":"identity","identity_uuid","attacker_uuid",
   "multi_actor_primitives","suspicions","attackers","chain"}
where identity_uuid is the canonical identity, attackers its sorted
attackers, and chain the merge chain, each link
  {"identity_uuid","merged_ts","merged_event_id"} (the merge into the next
link; the last link, the canonical identity, has neither).

The exit status is 1 when the attacker or identity is not found.

`

func runState(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("state", "state (--identity ID | --attacker UUID) [flags]", stateDescription+awsHelp(identitiesTable, statesTable), stdout)
	identity := fs.String("identity", "", "identity UUID to show")
	attacker := fs.String("attacker", "", "attacker UUID whose identity to show")
	asJSON := fs.Bool("json", false, "write JSON Lines instead of a table")
	awsf := addAWSFlags(fs, identitiesTable, statesTable)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 || (*identity == "") == (*attacker == "") {
		fmt.Fprintln(stderr, "attribution state: give exactly one of --identity and --attacker, and no arguments")
		return errUsage
	}
	required := []resource{statesTable}
	if *attacker != "" {
		required = append(required, identitiesTable)
	}
	setup, err := awsf.resolve(ctx, os.LookupEnv, required...)
	if err != nil {
		return err
	}
	tables := ddbstore.Tables{Identities: setup.name(identitiesTable), States: setup.name(statesTable)}
	r := &operator.StateReader{
		Store:           ddbstore.New(dynamodb.NewFromConfig(setup.cfg), tables, 0),
		IdentitiesTable: tables.Identities,
		StatesTable:     tables.States,
	}
	var states *operator.IdentityStates
	if *attacker != "" {
		states, err = r.Attacker(ctx, *attacker)
	} else {
		states, err = r.Identity(ctx, *identity)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return writeStatesJSON(stdout, states)
	}
	return writeStatesTable(stdout, states, time.Now())
}

type stateJSON struct {
	Type              string            `json:"type"`
	IdentityUUID      string            `json:"identity_uuid"`
	AttackerUUID      string            `json:"attacker_uuid"`
	Primitive         string            `json:"primitive"`
	State             string            `json:"state"`
	CurrentValue      attribution.Value `json:"current_value"`
	Confidence        float64           `json:"confidence"`
	ObservationCount  int               `json:"observation_count"`
	LastChangeTS      float64           `json:"last_change_ts"`
	LastObservationTS float64           `json:"last_observation_ts"`
	Transitions       int64             `json:"transitions"`
	PendingEvents     int               `json:"pending_events"`
}

type identityJSON struct {
	Type                 string     `json:"type"`
	IdentityUUID         string     `json:"identity_uuid"`
	AttackerUUID         string     `json:"attacker_uuid"`
	MultiActorPrimitives []string   `json:"multi_actor_primitives"`
	Suspicions           int64      `json:"suspicions"`
	Attackers            []string   `json:"attackers"`
	Chain                []linkJSON `json:"chain"`
}

type linkJSON struct {
	IdentityUUID  string   `json:"identity_uuid"`
	MergedTS      *float64 `json:"merged_ts,omitempty"`
	MergedEventID string   `json:"merged_event_id,omitempty"`
}

func writeStatesJSON(w io.Writer, s *operator.IdentityStates) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, st := range s.States {
		if err := enc.Encode(stateJSON{
			Type: "state", IdentityUUID: s.IdentityUUID, AttackerUUID: st.AttackerUUID, Primitive: st.Primitive,
			State: st.State.State, CurrentValue: st.CurrentValue, Confidence: st.Confidence,
			ObservationCount: st.ObservationCount, LastChangeTS: st.LastChangeTS,
			LastObservationTS: st.LastObservationTS, Transitions: st.Transitions, PendingEvents: st.Pending,
		}); err != nil {
			return err
		}
	}
	chain := make([]linkJSON, len(s.Chain))
	for i, l := range s.Chain {
		chain[i] = linkJSON{IdentityUUID: l.IdentityUUID, MergedEventID: l.Stamp.ID}
		if !l.Stamp.IsZero() {
			chain[i].MergedTS = &l.Stamp.TS
		}
	}
	return enc.Encode(identityJSON{Type: "identity", IdentityUUID: s.IdentityUUID, AttackerUUID: s.AttackerUUID,
		MultiActorPrimitives: orEmpty(s.Flagged), Suspicions: s.Suspicions, Attackers: orEmpty(s.Attackers), Chain: chain})
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// maxValueWidth bounds the value column; longer values are cut with "…".
const maxValueWidth = 32

func writeStatesTable(w io.Writer, s *operator.IdentityStates, now time.Time) error {
	fmt.Fprintf(w, "identity %s", s.IdentityUUID)
	if s.AttackerUUID != "" {
		fmt.Fprintf(w, " (attacker %s)", s.AttackerUUID)
	}
	fmt.Fprintln(w)
	if len(s.Chain) > 1 {
		links := make([]string, len(s.Chain))
		for i, l := range s.Chain {
			links[i] = l.IdentityUUID
		}
		fmt.Fprintf(w, "merge chain: %s\n", strings.Join(links, " → "))
		for _, l := range s.Chain[:len(s.Chain)-1] {
			fmt.Fprintf(w, "  %s merged %s (event %s)\n", l.IdentityUUID, humanTime(l.Stamp.TS, now), l.Stamp.ID)
		}
	}
	if len(s.Attackers) > 0 {
		fmt.Fprintf(w, "attackers (%d): %s\n", len(s.Attackers), strings.Join(s.Attackers, ", "))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PRIMITIVE\tSTATE\tVALUE\tCONFIDENCE\tCOUNT\tSTABLE SINCE\tLAST OBSERVATION")
	pending := 0
	for _, st := range s.States {
		pending += st.Pending
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%d\t%s\t%s\n", st.Primitive, st.State.State, clip(string(st.CurrentValue), maxValueWidth),
			st.Confidence, st.ObservationCount, humanTime(st.LastChangeTS, now), humanTime(st.LastObservationTS, now))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.Flagged) > 0 {
		fmt.Fprintf(w, "\nmulti_actor flagged: %s (multi_actor_suspected events so far: %d)\n", strings.Join(s.Flagged, ", "), s.Suspicions)
	}
	if pending > 0 {
		fmt.Fprintf(w, "\n%d rebuild events not yet published (they go out with the series' next observation)\n", pending)
	}
	return nil
}

// humanTime renders epoch seconds as RFC 3339 in UTC and relative to now:
// "2024-04-25T14:09:35Z (3h ago)".
func humanTime(ts float64, now time.Time) string {
	if ts == 0 || math.IsNaN(ts) || math.IsInf(ts, 0) {
		return "-"
	}
	sec, frac := math.Modf(ts)
	t := time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return t.Format(time.RFC3339) + " (" + relative(now.Sub(t)) + ")"
}

// relative renders a duration in its largest whole unit: "3h ago",
// "in 5m", "just now".
func relative(d time.Duration) string {
	future := d < 0
	if future {
		d = -d
	}
	var n int64
	var unit string
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		n, unit = int64(d/time.Second), "s"
	case d < time.Hour:
		n, unit = int64(d/time.Minute), "m"
	case d < 48*time.Hour:
		n, unit = int64(d/time.Hour), "h"
	case d < 365*24*time.Hour:
		n, unit = int64(d/(24*time.Hour)), "d"
	default:
		n, unit = int64(d/(365*24*time.Hour)), "y"
	}
	if future {
		return "in " + strconv.FormatInt(n, 10) + unit
	}
	return strconv.FormatInt(n, 10) + unit + " ago"
}

func clip(s string, width int) string {
	r := []rune(s)
	if len(r) <= width {
		return s
	}
	return string(r[:width-1]) + "…"
}
