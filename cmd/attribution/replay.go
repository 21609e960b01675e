package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/replay"
)

const replayDescription = `Reads observation messages as JSON Lines, in arrival order, from FILE or
standard input: each line is the body the Lambda accepts (a BEHAVE envelope
with attacker_uuid, or one wrapped in an EventBridge event's "detail" or an
SNS notification's "Message"). Runs them through the same engine and
transition rules as the Lambda, in memory, and writes JSON Lines to standard
output:

  - one line per transition, as it is emitted:
    {"type":"attribution.profile.state_changed","attacker_uuid",
     "identity_uuid","primitive","old_state","new_state","current_value",
     "confidence","observation_count","ts"}
  - one line per suspicion of several operators behind one identity:
    {"type":"attribution.profile.multi_actor_suspected","attacker_uuid",
     "identity_uuid","primitives","evidence_summary","confidence","ts"}
  - after the input ends, one line per (identity, primitive), sorted by
    attacker_uuid then primitive:
    {"type":"state","attacker_uuid","identity_uuid","primitive","state",
     "current_value","confidence","observation_count","last_change_ts",
     "last_observation_ts"}

A redelivered message (same evidence_ref and primitive, same content)
changes nothing; one with the same key and new content replaces the earlier
one and the series is recomputed. A bad line is reported on standard error
with its line number and reason and skipped; the exit status is then 1.

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
