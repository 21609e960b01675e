package chaos

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
)

// linearizer forwards requests to the AWS endpoint, lets one DynamoDB
// request at a time reach it, and keeps a journal of the observations each
// applied transaction stored and of the membership changes applied, in the
// order the endpoint applied them.
//
// DynamoDB applies each conditional write and each transaction atomically
// (transactions are serialisable). moto's own server does not under
// concurrent requests: its TransactWriteItems copies every table it touches
// before applying the actions and, when the transaction is cancelled, puts
// the copies back, undoing whatever other requests wrote meanwhile, and
// conditions are checked and writes applied with no lock. devstack's
// launcher serialises DynamoDB requests inside moto; serialising them here
// as well keeps the harness sound against a moto without that fix, and is
// what makes the journal exact: requests pass one at a time, so the
// journal is the true order of application, including commits whose answer
// the fault injector dropped afterwards. Everything before the endpoint
// (the SDK, the fault injector, the function's concurrent units and instances)
// stays concurrent.
type linearizer struct {
	srv    *http.Server
	ln     net.Listener
	proxy  *httputil.ReverseProxy
	done   chan struct{}
	tables ddbstore.Tables

	dynamoDB sync.Mutex // held for the whole of each DynamoDB request
	journal  []applied
	bad      []error // undecodable journal entries
	// inline holds, per series record, the inline observations (by ref and
	// revision) of its last write: a write applies those it adds.
	inline map[string]map[string]bool
	// membership holds each identity's membership version as last written:
	// a transaction that moves one is a membership change.
	membership map[string]int64
	// young holds, per young series record, what its writes journaled: a
	// membership change that leaves it under an older membership makes it
	// an orphan, whose observations were never applied.
	young   map[string]*youngRecord
	parents map[string]attribution.Stamp
	// transactions counts those applied; current is the one being read.
	transactions, current int
}

// applied is one entry of the journal: an observation an applied commit
// stored, or an applied membership change. Entries of one transaction share
// its number (0 for a single write).
type applied struct {
	observation *attribution.Observation
	membership  *membershipApplied
	transaction int
	void        bool // journaled by a record that became an orphan
}

// youngRecord is what the journal knows of a young series record.
type youngRecord struct {
	identity   string
	membership int64
	entries    []int // journal indices its writes added
}

// membershipApplied is what the harness reads of an applied membership
// change: the attacker it moved (formed and linked), with the stamp of the
// event that moved it, and the parent stamps of the identity records it
// wrote (merged and unmerged set the loser's to the event's stamp).
type membershipApplied struct {
	attacker, identity string
	stamp              attribution.Stamp
	parentStamps       map[string]attribution.Stamp
}

func startLinearizer(upstream string, tables ddbstore.Tables) (*linearizer, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("parse endpoint %q: %w", upstream, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	l := &linearizer{ln: ln, done: make(chan struct{}), tables: tables, inline: map[string]map[string]bool{}, membership: map[string]int64{}, young: map[string]*youngRecord{}, parents: map[string]attribution.Stamp{}}
	l.proxy = httputil.NewSingleHostReverseProxy(u)
	l.proxy.Transport = &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}
	l.proxy.ErrorLog = log.New(io.Discard, "", 0)
	l.srv = &http.Server{Handler: l, ErrorLog: log.New(io.Discard, "", 0)}
	go func() {
		defer close(l.done)
		_ = l.srv.Serve(ln) // http.ErrServerClosed after close
	}()
	return l, nil
}

// URL is the endpoint to use instead of the upstream.
func (l *linearizer) URL() string { return "http://" + l.ln.Addr().String() }

func (l *linearizer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	if !strings.HasPrefix(target, "DynamoDB_") {
		l.proxy.ServeHTTP(w, r)
		return
	}
	l.dynamoDB.Lock()
	defer l.dynamoDB.Unlock()
	transaction := target == "DynamoDB_20120810.TransactWriteItems"
	if !transaction && target != "DynamoDB_20120810.UpdateItem" {
		l.proxy.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	// A write the endpoint received is applied whether or not its client
	// is still there (a function process that exited): it is journaled
	// all the same.
	r = r.WithContext(context.WithoutCancel(r.Context()))
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	l.proxy.ServeHTTP(rec, r)
	if rec.status != http.StatusOK {
		return
	}
	if transaction {
		l.record(body)
		return
	}
	var u update
	if err := json.Unmarshal(body, &u); err != nil {
		l.bad = append(l.bad, fmt.Errorf("decode an update: %w", err))
		return
	}
	if u.TableName == l.tables.States {
		l.recordInline(u)
	}
}

type attr map[string]json.RawMessage

// update is what the journal reads of an UpdateItem, alone or in a
// transaction.
type update struct {
	TableName                 string
	Key                       map[string]attr
	ExpressionAttributeValues map[string]attr
}

// recordInline journals the observations a series record's write added
// inline: the record is then their commit point.
func (l *linearizer) recordInline(u update) int {
	var id, prim string
	_ = json.Unmarshal(u.Key["identity_uuid"]["S"], &id)
	_ = json.Unmarshal(u.Key["primitive"]["S"], &prim)
	if prim == attribution.IdentityRecordKey {
		return 0
	}
	var blob []byte
	if err := json.Unmarshal(u.ExpressionAttributeValues[":rec"]["B"], &blob); err != nil {
		return 0 // an acknowledgement: no record body
	}
	var rec attribution.SeriesRecord
	if err := inflateJSON(blob, &rec); err != nil {
		l.bad = append(l.bad, fmt.Errorf("series record %s|%s: %w", id, prim, err))
		return 0
	}
	key := id + "|" + prim
	// A write over an orphan (a replacement, or a change's recompute)
	// finds it voided first.
	l.voidOrphans(id)
	before, now := l.inline[key], make(map[string]bool, len(rec.Inline))
	added := 0
	for _, o := range rec.Inline {
		name := fmt.Sprintf("%s|%s@%d", o.Ref().Key, o.Ref().Ref, o.Revision)
		now[name] = true
		if !before[name] {
			obs := o.Observation
			l.journal = append(l.journal, applied{observation: &obs, transaction: l.current})
			added++
		}
	}
	l.inline[key] = now
	if !rec.Young {
		delete(l.young, key) // what it journaled stands
		return added
	}
	y := l.young[key]
	if y == nil {
		y = &youngRecord{identity: id}
		l.young[key] = y
	}
	y.membership = rec.Membership
	for i := len(l.journal) - added; i < len(l.journal); i++ {
		y.entries = append(y.entries, i)
	}
	l.voidOrphans(id)
	return added
}

// voidOrphans voids what the young records of identity journaled when
// they are under an older membership than the identity's.
func (l *linearizer) voidOrphans(identity string) {
	for key, y := range l.young {
		if y.identity != identity || y.membership >= l.membership[identity] {
			continue
		}
		for _, i := range y.entries {
			l.journal[i].void = true
		}
		delete(l.young, key)
		delete(l.inline, key)
	}
}

// record adds what an applied TransactWriteItems stored: its observations
// (as items, or inline in their records), or, for a membership change (no
// observation), the change.
func (l *linearizer) record(body []byte) {
	var req struct {
		TransactItems []struct {
			Put *struct {
				TableName string
				Item      map[string]attr
			}
			Update *update
		}
	}
	if err := json.Unmarshal(body, &req); err != nil {
		l.bad = append(l.bad, fmt.Errorf("decode a transaction: %w", err))
		return
	}
	l.transactions++
	l.current = l.transactions
	defer func() { l.current = 0 }()
	var change membershipApplied
	moved := map[string]int64{} // membership versions the transaction writes
	membership, observations := false, 0
	for _, it := range req.TransactItems {
		switch {
		case it.Put != nil && it.Put.TableName == l.tables.Observations:
			var text string
			if err := json.Unmarshal(it.Put.Item["obs"]["S"], &text); err != nil {
				l.bad = append(l.bad, fmt.Errorf("observation item without its body: %w", err))
				continue
			}
			var o attribution.Observation
			if err := json.Unmarshal([]byte(text), &o); err != nil {
				l.bad = append(l.bad, fmt.Errorf("decode a stored observation: %w", err))
				continue
			}
			l.journal = append(l.journal, applied{observation: &o, transaction: l.current})
			observations++
		case it.Update != nil && it.Update.TableName == l.tables.Identities:
			// An attacker's identity set by an identity event.
			membership = true
			vals := it.Update.ExpressionAttributeValues
			var key, id, sid, sts string
			errs := []error{
				json.Unmarshal(it.Update.Key["attacker_uuid"]["S"], &key),
				json.Unmarshal(vals[":id"]["S"], &id),
				json.Unmarshal(vals[":sid"]["S"], &sid),
				json.Unmarshal(vals[":sts"]["N"], &sts),
			}
			ts, err := strconv.ParseFloat(sts, 64)
			if err := errors.Join(append(errs, err)...); err != nil {
				l.bad = append(l.bad, fmt.Errorf("attacker update of a membership change: %w", err))
				continue
			}
			change.attacker, change.identity, change.stamp = key, id, attribution.Stamp{TS: ts, ID: sid}
		case it.Update != nil && it.Update.TableName == l.tables.States:
			var id, prim string
			_ = json.Unmarshal(it.Update.Key["identity_uuid"]["S"], &id)
			_ = json.Unmarshal(it.Update.Key["primitive"]["S"], &prim)
			if prim != attribution.IdentityRecordKey {
				observations += l.recordInline(*it.Update)
				continue
			}
			var blob []byte
			if err := json.Unmarshal(it.Update.ExpressionAttributeValues[":rec"]["B"], &blob); err != nil {
				l.bad = append(l.bad, fmt.Errorf("identity record %s without its body: %w", id, err))
				continue
			}
			var node attribution.IdentityRecord
			if err := inflateJSON(blob, &node); err != nil {
				l.bad = append(l.bad, fmt.Errorf("identity record %s: %w", id, err))
				continue
			}
			if change.parentStamps == nil {
				change.parentStamps = map[string]attribution.Stamp{}
			}
			change.parentStamps[id] = node.ParentStamp
			// A series created under an identity writes its record unchanged
			// (the membership fence); a membership change moves its version
			// or its merge.
			if node.Membership != l.membership[id] || !node.ParentStamp.IsZero() && node.ParentStamp != l.parents[id] {
				membership = true
			}
			// The membership moves once the transaction's records are
			// journaled: a record it rewrites under the old one was read
			// by the change, not orphaned.
			l.parents[id] = node.ParentStamp
			moved[id] = node.Membership
		}
	}
	for id, m := range moved {
		l.membership[id] = m
		l.voidOrphans(id)
	}
	if observations == 0 && membership {
		l.journal = append(l.journal, applied{membership: &change, transaction: l.current})
	}
}

func inflateJSON(blob []byte, v any) error {
	raw, err := io.ReadAll(flate.NewReader(bytes.NewReader(blob)))
	if err != nil {
		return fmt.Errorf("inflate: %w", err)
	}
	return json.Unmarshal(raw, v)
}

// applied returns the journal without what orphans journaled, the
// observations every write journaled (orphans' too), and an error if some
// entry could not be read.
func (l *linearizer) applied() ([]applied, []attribution.Observation, error) {
	l.dynamoDB.Lock()
	defer l.dynamoDB.Unlock()
	if len(l.bad) > 0 {
		return nil, nil, fmt.Errorf("journal of applied commits: %d unreadable entries, the first: %w", len(l.bad), l.bad[0])
	}
	var out []applied
	var written []attribution.Observation
	for _, a := range l.journal {
		if a.observation != nil {
			written = append(written, *a.observation)
		}
		if !a.void {
			out = append(out, a)
		}
	}
	return out, written, nil
}

// inCommitOrder puts the observations of each transaction of the journal
// in the order the function applied them. A transaction shows its records
// one after the other, but the function applies a commit of several series
// in batch order across them, which the identity's cross-primitive rule
// follows; orders holds that order for each commit of several
// observations.
func inCommitOrder(journal []applied, orders [][]attribution.Observation) []applied {
	name := func(o *attribution.Observation) string {
		return o.AttackerUUID + "|" + o.Primitive + "|" + o.EvidenceRef + "|" + o.Fingerprint()
	}
	rank := make(map[string]map[string]int) // by the commit's sorted names
	setOf := func(names []string) string { return strings.Join(slices.Sorted(slices.Values(names)), "\n") }
	for _, obs := range orders {
		names := make([]string, len(obs))
		positions := make(map[string]int, len(obs))
		for i := range obs {
			names[i] = name(&obs[i])
			positions[names[i]] = i
		}
		rank[setOf(names)] = positions
	}
	out := slices.Clone(journal)
	for start := 0; start < len(out); {
		end := start + 1
		for end < len(out) && out[start].transaction != 0 && out[end].transaction == out[start].transaction {
			end++
		}
		run := out[start:end]
		var names []string
		for _, a := range run {
			if a.observation != nil {
				names = append(names, name(a.observation))
			}
		}
		if positions := rank[setOf(names)]; len(names) == len(run) && positions != nil {
			slices.SortStableFunc(run, func(a, b applied) int { return positions[name(a.observation)] - positions[name(b.observation)] })
		}
		start = end
	}
	return out
}

func (l *linearizer) close() error {
	err := l.srv.Shutdown(context.Background())
	<-l.done
	return err
}

// statusRecorder notes the status of a response on its way through.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
