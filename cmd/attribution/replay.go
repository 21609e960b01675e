package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/replay"
)

const replayDescription = `Reads messages as JSON Lines, in arrival order, from FILE or standard
input: each line is a body the Lambda accepts — an observation (a BEHAVE
envelope with attacker_uuid, bare or wrapped in an EventBridge event's
"detail", an SNS notification's "Message" or a DECNET bus envelope's
"payload"), or a DECNET bus envelope of an identity event (identity.formed,
identity.observation.linked, identity.merged, identity.unmerged). Runs them
through the same engine, identity resolution and transition rules as the
Lambda, in memory, and writes JSON Lines to standard output:

  - one line per transition, as it is emitted:
    {"type":"attribution.profile.state_changed","attacker_uuid",
     "identity_uuid","primitive","old_state","new_state","current_value",
     "confidence","observation_count","ts"}
  - one line per suspicion of several operators behind one identity:
    {"type":"attribution.profile.multi_actor_suspected","attacker_uuid",
     "identity_uuid","primitives","evidence_summary","confidence","ts"}
  - one line per identity that stopped being canonical:
    {"type":"attribution.identity.rekeyed","identity_uuid","into",
     "primitives","cause","ts"}
  - after the input ends, one line per (canonical identity, primitive),
    sorted by attacker_uuid (null first), identity_uuid, then primitive:
    {"type":"state","attacker_uuid","identity_uuid","attackers","primitive",
     "state","current_value","confidence","observation_count",
     "last_change_ts","last_observation_ts"}
    where attackers are the sorted attackers resolving to the identity and
    attacker_uuid is the single attacker of a provisional identity, else
    null.

A redelivered message (same evidence_ref and primitive, same content)
changes nothing; one with the same key and new content replaces the earlier
one and the series is recomputed. Identity events are ordered by the bus
envelope's ts then id: a repeated or older one changes nothing. A bad line
is reported on standard error with its line number and reason and skipped;
the exit status is then 1.

Thresholds come from the ATTRIBUTION_* environment variables (defaults are
the reference values).
`

func runReplay(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("replay", "replay [--registry FILE] [--full-recompute] [FILE]", replayDescription, stdout)
	registryPath := fs.String("registry", "", `JSON file {"primitive": "categorical|numeric|hash"} overriding the built-in primitive kinds`)
	full := fs.Bool("full-recompute", false, "recompute every state from the whole series (the reference design; slower, same output)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(stderr, "attribution replay: at most one FILE")
		return errUsage
	}
	reg, err := loadRegistry(*registryPath)
	if err != nil {
		return err
	}
	thresholds, err := attribution.ThresholdsFromEnv(os.LookupEnv)
	if err != nil {
		return err
	}
	in := stdin
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	res, err := replay.Run(ctx, in, stdout, stderr, replay.Options{Registry: reg, Thresholds: thresholds, FullRecompute: *full})
	if err != nil {
		return err
	}
	if res.BadLines > 0 {
		return &badInputError{bad: res.BadLines, total: res.Lines}
	}
	return nil
}
