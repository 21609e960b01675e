package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
	"decnet-attribution/internal/eventbus"
	"decnet-attribution/internal/operator"
)

// defaultCheckpoint is where rebuild keeps its progress.
const defaultCheckpoint = ".attribution-rebuild.json"

const rebuildDescription = `Recomputes every state from the observations table, after a change of the
thresholds (ATTRIBUTION_* environment variables) or of the primitive registry
(--registry, $ATTRIBUTION_REGISTRY). Deploy the new settings to the function
first, then rebuild with the same settings.

The observations table is scanned in --segments parallel segments to find
the stored series (each attacker's own); each attacker is resolved to its
canonical identity (through the identities table and DECNET's merges), and
each series of a canonical identity is rebuilt from all the observations of
all its attackers (read consistently), and its record written with a version-conditioned write
together with the identity's multi_actor flags, so a rebuild can run while
the function works: on a conflict the series is read and rebuilt again.
Identities merged into another, or left without attackers, keep their
frozen records. A record that comes out the same is not written. Memory grows with the number
of series (one key each, for the checkpoint), not with observations.

For every series whose state changes, a line goes to standard output:
  IDENTITY|PRIMITIVE: OLD → NEW, count A → B
(OLD is "(none)" for a series with no state yet). --dry-run prints these
lines and writes nothing at all.

A changed state word is a transition. With --emit its state_changed event
(and a multi_actor_suspected event when the identity's flagged set changes)
is published to the event bus, as the function publishes it, along with any
event an outbox still held. Without --emit the rebuild's events are never
published (their sequence numbers still count), and events the outboxes held
before stay there for the function to publish.

Progress is saved in --checkpoint FILE: where each scan segment stands and
which series are done. Run the same command again after an interruption to
continue; a complete rebuild removes the file. Series that fail alone (a
stored value that no longer fits its primitive's kind, repeated conflicts)
are reported on standard error and kept in the checkpoint for the next run;
the exit status is then 1.

On a terminal a progress bar (observation items scanned) shows on standard
error; a summary line follows.

`

func runRebuild(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("rebuild", "rebuild [flags]", rebuildDescription+awsHelp(identitiesTable, observationsTable, statesTable, eventBus), stdout)
	segments := fs.Int("segments", operator.DefaultSegments, fmt.Sprintf("parallel scan segments, 1 to %d", operator.MaxSegments))
	checkpoint := fs.String("checkpoint", defaultCheckpoint, "file keeping the rebuild's progress, to resume from")
	dryRun := fs.Bool("dry-run", false, "report the states that would change; write nothing")
	emit := fs.Bool("emit", false, "publish the transitions to the event bus")
	pageSize := fs.Int("page-size", 0, "observation items per scan page (default: DynamoDB's 1 MB pages)")
	registryPath := fs.String("registry", "", `JSON file {"primitive": "categorical|numeric|hash"} overriding the built-in primitive kinds (default: $ATTRIBUTION_REGISTRY)`)
	awsf := addAWSFlags(fs, identitiesTable, observationsTable, statesTable, eventBus)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintln(stderr, "attribution rebuild: no arguments expected")
		return errUsage
	case *segments < 1 || *segments > operator.MaxSegments:
		fmt.Fprintf(stderr, "attribution rebuild: --segments must be 1 to %d\n", operator.MaxSegments)
		return errUsage
	case *pageSize < 0:
		fmt.Fprintln(stderr, "attribution rebuild: --page-size must not be negative")
		return errUsage
	case *dryRun && *emit:
		fmt.Fprintln(stderr, "attribution rebuild: --dry-run publishes nothing; drop --emit")
		return errUsage
	}
	reg, err := registryFrom(*registryPath, os.LookupEnv)
	if err != nil {
		return err
	}
	thresholds, err := attribution.ThresholdsFromEnv(os.LookupEnv)
	if err != nil {
		return err
	}
	required := []resource{identitiesTable, observationsTable, statesTable}
	if *emit {
		required = append(required, eventBus)
	}
	setup, err := awsf.resolve(ctx, os.LookupEnv, required...)
	if err != nil {
		return err
	}
	tables := ddbstore.Tables{Identities: setup.name(identitiesTable), Observations: setup.name(observationsTable), States: setup.name(statesTable)}
	store := ddbstore.New(dynamodb.NewFromConfig(setup.cfg), tables, 0)
	r := &operator.Rebuilder{
		Scanner:           store,
		ObservationsTable: tables.Observations,
		StatesTable:       tables.States,
		Store:             store,
		Registry:          reg,
		Thresholds:        thresholds,
		Segments:          *segments,
		DryRun:            *dryRun,
		Checkpoint:        *checkpoint,
		PageSize:          int32(*pageSize),
		OnChange:          func(c operator.Change) { fmt.Fprintln(stdout, c.String()) },
	}
	if *emit {
		bus := setup.name(eventBus)
		pub, err := eventbus.New(eventbridge.NewFromConfig(setup.cfg), eventbus.Config{BusName: bus})
		if err != nil {
			return err
		}
		r.Publisher, r.EventBus = pub, bus
	}
	var bar *operator.Bar
	if stderrIsTerminal(stderr) {
		items, _ := store.ObservationItems(ctx) // 0, unknown: the bar counts
		bar = operator.NewBar(stderr, "scanned", items)
		r.OnProgress = func(p operator.RebuildProgress) { bar.Set(p.Scanned, rebuildDetail(p)) }
	}
	if !*dryRun {
		if _, err := os.Stat(*checkpoint); err == nil {
			fmt.Fprintf(stderr, "resuming from %s\n", *checkpoint)
		}
	}
	res, runErr := r.Run(ctx)
	if bar != nil {
		bar.Finish(res.Scanned, rebuildDetail(res.RebuildProgress))
	}
	for _, f := range res.Failures {
		fmt.Fprintf(stderr, "series %s\n", f)
	}
	fmt.Fprintln(stderr, rebuildSummary(res, *dryRun, *emit))
	switch {
	case errors.Is(runErr, context.Canceled):
		return fmt.Errorf("interrupted; run the same command again to continue from %s", *checkpoint)
	case runErr != nil && !*dryRun:
		return fmt.Errorf("%w (progress is saved in %s; run the same command again to continue)", runErr, *checkpoint)
	case runErr != nil:
		return runErr
	case len(res.Failures) > 0 && !*dryRun:
		return fmt.Errorf("%d series could not be rebuilt (see above); %s keeps them for the next run", len(res.Failures), *checkpoint)
	case len(res.Failures) > 0:
		return fmt.Errorf("%d series could not be rebuilt (see above)", len(res.Failures))
	}
	return nil
}

func rebuildDetail(p operator.RebuildProgress) string {
	return fmt.Sprintf("%d series, %d changed, %d failed", p.Series, p.Changed, p.Failed)
}

func rebuildSummary(res operator.RebuildResult, dryRun, emit bool) string {
	s := fmt.Sprintf("scanned %d observation items; ", res.Scanned)
	if res.Resumed {
		s += fmt.Sprintf("%d series were done by an earlier run; ", res.AlreadyDone)
	}
	if dryRun {
		return s + fmt.Sprintf("dry run: %d series examined, %d would change (%d state words), %d failed; nothing was written",
			res.Series, res.Changed, res.Transitions, res.Failed)
	}
	s += fmt.Sprintf("rebuilt %d series: %d changed, %d transitions, %d failed; ", res.Series, res.Changed, res.Transitions, res.Failed)
	if emit {
		return s + fmt.Sprintf("%d events published", res.Published)
	}
	return s + "no events published (no --emit)"
}
