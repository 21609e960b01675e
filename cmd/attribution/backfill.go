package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"decnet-attribution/internal/operator"
)

const backfillDescription = `Reads DECNET's observations table and sends every row (in ts order, from
--since on) to the observation queue as the observation message DECNET's bus
carried: what the bus dropped while the bridge was down, or what a full
spool refused, reaches the service this way. The service dedupes on
evidence_ref and content, so rows it already has are no-ops: backfilling an
overlapping window is harmless.

--decnet-db is sqlite:PATH (read only) or mysql://USER:PASS@HOST[:PORT]/DB,
the two databases DECNET runs on. Rows are checked as the function checks
messages; a bad row is reported with its id and reason and not sent.

On a terminal a progress bar shows on standard error; a summary line
follows. The exit status is 0 when every row was sent, 1 otherwise.

`

func runBackfill(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("backfill", "backfill --decnet-db URL [--since TS] [flags]", backfillDescription+awsHelp(observationQueue), stdout)
	dbURL := fs.String("decnet-db", "", "DECNET's database: sqlite:PATH or mysql://USER:PASS@HOST[:PORT]/DB (required)")
	sinceFlag := fs.String("since", "", "only rows with ts at or after this: epoch seconds, RFC 3339 or YYYY-MM-DD")
	registryPath := fs.String("registry", "", `JSON file {"primitive": "categorical|numeric|hash"} overriding the built-in primitive kinds (default: $ATTRIBUTION_REGISTRY)`)
	awsf := addAWSFlags(fs, observationQueue)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dbURL == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "attribution backfill: --decnet-db URL is required, and no arguments")
		return errUsage
	}
	var since *float64
	if *sinceFlag != "" {
		v, err := operator.ParseSince(*sinceFlag)
		if err != nil {
			fmt.Fprintln(stderr, "attribution backfill:", err)
			return errUsage
		}
		since = &v
	}
	db, err := operator.OpenDecnetDB(*dbURL)
	if err != nil {
		fmt.Fprintln(stderr, "attribution backfill:", err)
		return errUsage
	}
	defer db.Close()
	reg, err := registryFrom(*registryPath, os.LookupEnv)
	if err != nil {
		return err
	}
	setup, err := awsf.resolve(ctx, os.LookupEnv, observationQueue)
	if err != nil {
		return err
	}
	queueURL := setup.name(observationQueue)
	b := &operator.Backfiller{DB: db, Since: since, Sender: &operator.Sender{Client: sqs.NewFromConfig(setup.cfg), QueueURL: queueURL, Registry: reg}}
	var bar *operator.Bar
	var last operator.SendProgress
	if stderrIsTerminal(stderr) {
		b.Progress = func(p operator.SendProgress, total int64) {
			if bar == nil {
				bar = operator.NewBar(stderr, "backfilling", total)
			}
			last = p
			bar.Set(int64(p.Lines), sendDetail(p))
		}
	}
	res, sendErr := b.Backfill(ctx)
	if bar != nil {
		bar.Finish(int64(last.Lines), sendDetail(last))
	}
	for _, p := range res.Bad {
		fmt.Fprintf(stderr, "row %s: %s\n", p.ID, p.Reason)
	}
	for _, p := range res.Unsent {
		fmt.Fprintf(stderr, "row %s: not sent: %s\n", p.ID, p.Reason)
	}
	fmt.Fprintf(stderr, "backfill: sent %d of %d rows of DECNET's observations to %s; %d bad, %d not sent\n", res.Sent, res.Rows, queueURL, len(res.Bad), len(res.Unsent))
	if sendErr != nil {
		return fmt.Errorf("stopped after %d rows: %w", res.Rows, sendErr)
	}
	if res.Sent != res.Rows {
		return fmt.Errorf("%d of %d rows were not sent (see above)", res.Rows-res.Sent, res.Rows)
	}
	return nil
}
