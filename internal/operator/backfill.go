package operator

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"
	_ "modernc.org/sqlite" // pure Go: CGO_ENABLED=0 builds keep working
)

// OpenDecnetDB opens DECNET's database from a URL as DECNET's settings
// name it: sqlite:PATH (also sqlite:///PATH) or mysql://USER:PASS@HOST[:PORT]/DB
// (also mysql+DRIVER://, as SQLAlchemy spells it). SQLite is opened read
// only.
func OpenDecnetDB(raw string) (*sql.DB, error) {
	scheme, rest, ok := strings.Cut(raw, ":")
	if !ok {
		return nil, fmt.Errorf("--decnet-db %q: want sqlite:PATH or mysql://USER:PASS@HOST/DB", raw)
	}
	scheme, _, _ = strings.Cut(scheme, "+")
	switch scheme {
	case "sqlite":
		path := strings.TrimPrefix(rest, "//")
		if path == "" {
			return nil, fmt.Errorf("--decnet-db %q: no file after sqlite:", raw)
		}
		return sql.Open("sqlite", "file:"+path+"?mode=ro")
	case "mysql":
		u, err := url.Parse("mysql:" + rest)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("--decnet-db %q: want mysql://USER:PASS@HOST[:PORT]/DB", raw)
		}
		cfg := mysqldriver.NewConfig()
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
		cfg.Net, cfg.Addr = "tcp", u.Host
		if u.Port() == "" {
			cfg.Addr = u.Host + ":3306"
		}
		cfg.DBName = strings.TrimPrefix(u.Path, "/")
		return sql.Open("mysql", cfg.FormatDSN())
	}
	return nil, fmt.Errorf("--decnet-db %q: scheme %q is neither sqlite nor mysql", raw, scheme)
}

// ParseSince reads --since: epoch seconds, or an RFC 3339 time.
func ParseSince(s string) (float64, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		return f, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return float64(t.UnixNano()) / 1e9, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return float64(t.Unix()), nil
	}
	return 0, fmt.Errorf("--since %q: want epoch seconds, an RFC 3339 time or a date", s)
}

// Backfiller sends DECNET's stored observations to the queue.
type Backfiller struct {
	DB     *sql.DB
	Sender *Sender
	// Since, when set, skips rows whose ts is before it.
	Since *float64
	// Progress, when set, is called as rows are read and sent, with the
	// number of rows to send in all.
	Progress func(p SendProgress, total int64)
}

// BackfillResult is what a backfill did. Row problems name the row's id.
type BackfillResult struct {
	Rows   int
	Sent   int
	Bad    []RowProblem // rows that are not valid observations
	Unsent []RowProblem // valid rows the queue did not take
}

// RowProblem is a row that was not sent.
type RowProblem struct {
	ID     string
	Reason string
}

const observationsQuery = `SELECT id, identity_ref, primitive, value, confidence, window_start_ts, window_end_ts,
 source, evidence_ref, envelope_v, ts, attacker_uuid FROM observations`

// Backfill reads DECNET's observations table (in ts order) and sends each
// row as the observation message DECNET's bus would have carried. Sending
// a row the service already has is a no-op there (same evidence_ref and
// content), so overlapping backfills are harmless.
func (b *Backfiller) Backfill(ctx context.Context) (BackfillResult, error) {
	var res BackfillResult
	where, args := "", []any{}
	if b.Since != nil {
		where, args = " WHERE ts >= ?", append(args, *b.Since)
	}
	var total int64
	if err := b.DB.QueryRowContext(ctx, "SELECT COUNT(*) FROM observations"+where, args...).Scan(&total); err != nil {
		return res, fmt.Errorf("count DECNET's observations: %w", err)
	}
	rows, err := b.DB.QueryContext(ctx, observationsQuery+where+" ORDER BY ts, id", args...)
	if err != nil {
		return res, fmt.Errorf("read DECNET's observations: %w", err)
	}
	defer rows.Close()

	// Rows become JSON lines the Sender checks, batches and sends; line n
	// is row ids[n-1].
	var ids []string
	var unreadable []RowProblem
	pr, pw := io.Pipe()
	readErr := make(chan error, 1)
	go func() {
		err := func() error {
			for rows.Next() {
				line, id, err := scanObservation(rows)
				if err != nil {
					return err
				}
				if line == nil {
					unreadable = append(unreadable, RowProblem{ID: id, Reason: "value: is not valid JSON"})
					continue
				}
				ids = append(ids, id)
				if _, err := pw.Write(append(line, '\n')); err != nil {
					return err
				}
			}
			return rows.Err()
		}()
		pw.CloseWithError(err)
		readErr <- err
	}()
	s := *b.Sender
	if b.Progress != nil {
		s.Progress = func(p SendProgress) { b.Progress(p, total) }
	}
	sent, sendErr := s.Send(ctx, pr)
	pr.CloseWithError(errors.New("send stopped"))
	rerr := <-readErr
	res.Rows, res.Sent = sent.Lines+len(unreadable), sent.Sent
	res.Bad = append(res.Bad, unreadable...)
	rowID := func(line int) string {
		if line >= 1 && line <= len(ids) {
			return ids[line-1]
		}
		return "?"
	}
	for _, p := range sent.Bad {
		res.Bad = append(res.Bad, RowProblem{ID: rowID(p.Line), Reason: p.Reason})
	}
	for _, p := range sent.Unsent {
		res.Unsent = append(res.Unsent, RowProblem{ID: rowID(p.Line), Reason: p.Reason})
	}
	if rerr != nil && sendErr == nil {
		return res, fmt.Errorf("read DECNET's observations: %w", rerr)
	}
	return res, sendErr
}

// scanObservation turns one row into an observation message; a nil
// message means the row's value is not JSON.
func scanObservation(rows *sql.Rows) ([]byte, string, error) {
	var (
		id, primitive, evidenceRef, attacker string
		identityRef, source                  sql.NullString
		value                                []byte
		confidence, start, end, ts           sql.NullFloat64
		version                              sql.NullInt64
	)
	if err := rows.Scan(&id, &identityRef, &primitive, &value, &confidence, &start, &end, &source, &evidenceRef, &version, &ts, &attacker); err != nil {
		return nil, "", fmt.Errorf("scan a row of observations: %w", err)
	}
	if !json.Valid(value) {
		return nil, id, nil
	}
	msg := map[string]any{
		"id": id, "primitive": primitive, "evidence_ref": evidenceRef, "attacker_uuid": attacker,
		"value": json.RawMessage(value),
	}
	if ts.Valid {
		msg["ts"] = ts.Float64
	}
	if confidence.Valid {
		msg["confidence"] = confidence.Float64
	}
	if start.Valid && end.Valid {
		msg["window"] = map[string]float64{"start_ts": start.Float64, "end_ts": end.Float64}
	}
	if source.Valid {
		msg["source"] = source.String
	}
	if identityRef.Valid && identityRef.String != "" {
		msg["identity_ref"] = identityRef.String
	}
	if version.Valid {
		msg["v"] = version.Int64
	}
	line, err := json.Marshal(msg)
	return line, id, err
}
