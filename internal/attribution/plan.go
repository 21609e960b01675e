package attribution

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// planInput is everything planning reads: the unit's waiting items with
// working copies of their records and identity record, what the store
// holds under each item's key, and the whole series where one is needed.
type planInput struct {
	identity string
	items    []*item
	records  map[string]*SeriesRecord // by primitive
	ident    *IdentityRecord
	// joint is set when the identity record holds a seal: every commit
	// writes the record in a transaction, which fences it against the
	// change as a creation's check would (an expired seal, of a change
	// that died, is cleared by it).
	joint bool
	// whole holds, by primitive, every point of a series recomputed from
	// scratch (an amendment, a record built under other settings), by
	// pointKey.
	whole map[string]map[string]Point
}

// plan is the next writes of a unit.
type plan struct {
	commits []*Commit
	owners  [][]*item // owners[i]: the items commits[i] applies, in order
	caused  [][]Event // caused[i]: the events commits[i] adds
}

// errStaleResolution reports that a unit's records were computed under
// another membership than the one its attackers were resolved under.
var errStaleResolution = errors.New("membership changed since the attackers were resolved")

// prepare reads what planning needs: records and the identity record (the
// cache's when warm), then, for items their record cannot answer for,
// whether their observation is stored, then the whole series where a
// record must be recomputed.
func (u *unitRun) prepare(ctx context.Context, todo []*item) (*planInput, error) {
	p := u.p
	primitives := make([]string, 0, len(todo))
	for _, it := range todo {
		primitives = append(primitives, it.key.Primitive)
	}
	records, err := p.loadRecords(ctx, u.identity, primitives, u.consistent)
	if err != nil {
		return nil, err
	}
	in := &planInput{identity: u.identity, items: todo, records: records, whole: make(map[string]map[string]Point)}
	if err := u.checkYoung(ctx, in); err != nil {
		return nil, err
	}
	var lookup []ObservationRef
	for _, it := range todo {
		rec := records[it.key.Primitive]
		switch i := rec.inlineOf(it.obs); {
		case i >= 0:
			o := rec.Inline[i]
			it.stored, it.known = &StoredObservation{Observation: o.Observation, Revision: o.Revision}, true
		case rec.Complete:
			it.stored, it.known = nil, true
		case p.Design == Transactional:
			// The commit's conditions tell; a failed one says what is stored.
			if !it.known {
				it.stored = nil
			}
		default:
			it.stored, it.known = nil, false
			lookup = append(lookup, it.ref)
		}
	}
	// The identity record (free when cached) is read beside the lookups: a
	// plan needs it when it creates a series or changes the identity's
	// multi_actor set, and reading it then would cost a round trip.
	var identErr error
	var wg sync.WaitGroup
	if in.ident == nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.ident, identErr = p.loadIdentity(ctx, u.identity, u.consistent)
		}()
	}
	var found map[ObservationRef]StoredObservation
	if len(lookup) > 0 {
		found, err = p.Store.LookupObservations(ctx, lookup)
		if err != nil {
			err = fmt.Errorf("look up observations of identity %s: %w", u.identity, err)
		}
	}
	wg.Wait()
	if err = errors.Join(err, identErr); err != nil {
		return nil, err
	}
	if !in.ident.Seal.IsZero() {
		in.joint = true
		if !in.ident.Sealed(p.now()) {
			in.ident.Seal, in.ident.SealedAt = Stamp{}, 0
		}
	}

	for _, it := range todo {
		if !it.known {
			if s, ok := found[it.ref]; ok {
				it.stored = &s
			}
			it.known = true
		}
	}
	var whole []string
	for _, it := range todo {
		prim := it.key.Primitive
		rec := records[prim]
		amends := it.stored != nil && it.stored.Observation.Fingerprint() != it.obs.Fingerprint()
		if (amends || p.FullRecompute || !rec.Series.Compatible(p.Registry.Kind(prim), p.Thresholds)) && !slices.Contains(whole, prim) {
			whole = append(whole, prim)
		}
	}
	if len(whole) > 0 {
		union, err := p.loadUnion(ctx, todo[0].res.members, whole)
		if err != nil {
			return nil, err
		}
		for _, prim := range whole {
			points := make(map[string]Point)
			for _, o := range records[prim].Observations(union[prim]) {
				points[pointKey(SeriesKey{IdentityUUID: StubIdentityID(o.AttackerUUID), Primitive: prim}, o.EvidenceRef)] = o.Point()
			}
			in.whole[prim] = points
		}
	}
	return in, nil
}

// checkYoung reads the identity record consistently when a record is
// young, and settles each young record by it: one under an older
// membership is an orphan, replaced by an empty record (what it holds was
// never acknowledged and is delivered again); one under the current
// membership, with no seal, is visible to every later membership change,
// and the next commit clears its mark.
func (u *unitRun) checkYoung(ctx context.Context, in *planInput) error {
	if !slices.ContainsFunc(slices.Collect(maps.Values(in.records)), func(r *SeriesRecord) bool { return r.Young }) {
		return nil
	}
	p := u.p
	ident, err := p.Store.LoadIdentity(ctx, u.identity, true)
	if err != nil {
		return fmt.Errorf("load identity %s: %w", u.identity, err)
	}
	ident.IdentityUUID = u.identity
	sealed := !ident.Seal.IsZero()
	if !sealed {
		p.cache.putIdentity(ident)
		ident = ident.Clone()
	}
	for prim, rec := range in.records {
		switch {
		case rec.Orphaned(ident.Membership):
			p.cache.forget(&Commit{Series: []*SeriesRecord{rec}})
			in.records[prim] = rec.Replacement(p.Registry.Kind(prim), p.Thresholds)
		case rec.Young:
			// Its next commit clears the mark: on its own when the record
			// is visible, else in a transaction with the identity record.
			rec.Young = false
			if sealed {
				rec.unvouched = true
			} else {
				u.check(rec.Key)
			}
		}
	}
	in.ident = ident
	return nil
}

// pointKey names a point of an identity's series uniquely: the natural key
// within the attacker's stored series.
func pointKey(store SeriesKey, ref string) string { return store.String() + "\x00" + ref }

// seriesPlan is what one plan does to one series.
type seriesPlan struct {
	rec      *SeriesRecord
	items    []*item
	writes   []ObservationWrite // items written in the commit (transactional design)
	bytes    int
	events   []Event
	identity bool // the commit must write the identity record
	creates  bool // the record is new (or replaces an orphan)
	// vouchers are duplicates of an unvouched record, acknowledged by the
	// commit that rewrites it.
	vouchers []*item
}

// plan applies the waiting items, in batch order, to their records, with no
// I/O. A second delivery of one observation waits, with what follows it,
// for the first's commit: transitions follow batch order.
//
// Every record it writes must have been computed under the membership the
// attackers were resolved under: a membership change rewrites every record
// of the identities it changes with the new membership version, so a record
// under another version means the resolution is stale (errStaleResolution),
// and a stale record fails its version condition at commit. A record it
// creates has no version to compare: the identity record's membership is
// checked here, and again after the single write that creates it, young
// (see unitRun.verify). A transaction with the identity record creates it
// instead when the identity is sealed or its multi_actor set changes, and
// in the transactional design.
func (p *Processor) plan(in *planInput) (*plan, error) {
	series := make(map[string]*seriesPlan)
	var order []string
	taken := make(map[ObservationRef]bool)
	var applied []*item // in the order applied
	for _, it := range in.items {
		if taken[it.ref] {
			break // the same observation again: it and what follows wait for the commit
		}
		prim := it.key.Primitive
		rec := in.records[prim]
		creates := rec.Version == 0 || rec.fresh
		if !creates && rec.Membership != it.res.membership {
			return nil, errStaleResolution
		}
		if creates && (in.ident.Parent != "" || in.ident.Membership != it.res.membership || !in.ident.HasMember(in.identity, it.obs.AttackerUUID)) {
			return nil, errStaleResolution
		}
		if it.stored != nil && it.stored.Observation.Fingerprint() == it.obs.Fingerprint() {
			it.state = duplicate
			p.count(MetricDuplicates, 1)
			if rec.unvouched {
				// Held by a young record a membership change may not have
				// read: acknowledged once a transaction with the identity
				// record has rewritten it.
				sp := series[prim]
				if sp == nil {
					sp = &seriesPlan{rec: rec, identity: true}
					series[prim] = sp
					order = append(order, prim)
				}
				sp.vouchers = append(sp.vouchers, it)
			}
			continue
		}
		if n := len(rec.Pending()); n >= MaxPendingEvents {
			// The bus has not taken this series' events for a while: hold
			// new observations back (the queue delivers them again) rather
			// than let the outbox grow toward the item size limit.
			it.state, it.err = settled, &Error{Code: ECONFLICT, Message: fmt.Sprintf("series %s has %d events the bus has not accepted yet; retry later", it.key, n)}
			continue
		}
		sp := series[prim]
		if sp == nil {
			sp = &seriesPlan{rec: rec, creates: creates, identity: in.joint || creates && p.Design == Transactional}
			series[prim] = sp
			order = append(order, prim)
			rec.Membership = it.res.membership
			rec.Outbox = rec.Pending()
		}
		if p.Design == Transactional && !sp.fits(it.obs) {
			break // the next commit takes it and what follows
		}
		taken[it.ref] = true
		if err := p.apply(in, sp, it); err != nil {
			return nil, err
		}
		applied = append(applied, it)
	}
	pl := &plan{}
	joint := &Commit{Identity: in.ident}
	var jointOwners []*item
	var jointEvents []Event
	for _, prim := range order {
		sp := series[prim]
		if len(sp.items) == 0 && len(sp.vouchers) == 0 {
			continue
		}
		sp.rec.release()
		if p.Design == Transactional {
			sp.rec.Complete = false // its observations are items, not inline
		}
		sp.rec.Young = sp.creates && !sp.identity
		if sp.identity {
			joint.Series = append(joint.Series, sp.rec)
			joint.Observations = append(joint.Observations, sp.writes...)
			jointOwners = append(jointOwners, sp.items...)
			jointOwners = append(jointOwners, sp.vouchers...)
			jointEvents = append(jointEvents, sp.events...)
			continue
		}
		pl.commits = append(pl.commits, &Commit{Series: []*SeriesRecord{sp.rec}, Observations: sp.writes, Applied: observations(sp.items)})
		pl.owners = append(pl.owners, sp.items)
		pl.caused = append(pl.caused, sp.events)
	}
	if len(joint.Series) > 0 {
		// Several series in one commit: Applied keeps the batch order
		// across them, which the cross-primitive rule followed.
		for _, it := range applied {
			if series[it.key.Primitive].identity {
				joint.Applied = append(joint.Applied, it.obs)
			}
		}
		pl.commits = append(pl.commits, joint)
		pl.owners = append(pl.owners, jointOwners)
		pl.caused = append(pl.caused, jointEvents)
	}
	return pl, nil
}

// apply applies one new or amending observation to its series' record.
func (p *Processor) apply(in *planInput, sp *seriesPlan, it *item) error {
	rec, prim := sp.rec, it.key.Primitive
	kind := p.Registry.Kind(prim)
	point := it.obs.Point()
	var state State
	if whole := in.whole[prim]; whole != nil {
		whole[pointKey(it.ref.Key, it.ref.Ref)] = point
		rec.Series, state = WholeSeries(kind, slices.Collect(maps.Values(whole)), p.Thresholds)
	} else {
		rec.Series.Add(point)
		state = rec.Series.State(p.Thresholds)
	}
	revision, replaces := 1, ""
	if it.stored != nil {
		revision, replaces = it.stored.Revision+1, it.stored.Observation.Fingerprint()
		// An item of the transactional design carries the events its
		// observation caused; the bus may not have taken them yet.
		carried := it.stored.Events
		for _, e := range carried[max(0, len(carried)-MaxCarriedEvents):] {
			rec.enqueue(e)
		}
	}
	before := len(rec.Outbox)
	change := rec.Transition(state, it.obs.AttackerUUID)
	if change != nil {
		e, err := change.Event()
		if err != nil {
			return err
		}
		rec.enqueue(e)
	}
	if Touches(change) {
		if s := in.ident.Flag(change, p.Thresholds); s != nil {
			if err := rec.Enqueue(s); err != nil {
				return err
			}
		}
		sp.identity = true
	}
	sp.events = append(sp.events, rec.Outbox[before:]...)
	if p.Design == Transactional {
		w := ObservationWrite{Key: it.ref.Key, Observation: it.obs, Revision: revision, Replaces: replaces}
		sp.writes = append(sp.writes, w)
		sp.bytes += jsonBytes(w.Observation) + commitItemOverhead
	} else {
		rec.putInline(InlineObservation{Observation: it.obs, Revision: revision})
	}
	sp.items = append(sp.items, it)
	return nil
}

// fits reports whether one more observation item can join the series'
// transaction: within DynamoDB's item count and size limits, with room for
// the record and the identity record.
func (sp *seriesPlan) fits(o Observation) bool {
	if len(sp.writes) == 0 {
		return true
	}
	return len(sp.writes)+3 <= MaxCommitItems &&
		sp.bytes+jsonBytes(o)+commitItemOverhead+jsonBytes(sp.rec)+identityReserve+newEventsReserve <= MaxCommitBytes
}

func observations(items []*item) []Observation {
	out := make([]Observation, len(items))
	for i, it := range items {
		out[i] = it.obs
	}
	return out
}

// loadRecords returns working copies of the records of primitives: from
// the cache where it has them, else from the store, else new.
func (p *Processor) loadRecords(ctx context.Context, identity string, primitives []string, consistent bool) (map[string]*SeriesRecord, error) {
	out := make(map[string]*SeriesRecord, len(primitives))
	var missing []string
	for _, prim := range primitives {
		if _, done := out[prim]; done {
			continue
		}
		key := SeriesKey{IdentityUUID: identity, Primitive: prim}
		if rec, ok := p.cache.series(key); ok {
			out[prim] = rec
			continue
		}
		out[prim] = nil
		missing = append(missing, prim)
	}
	if len(missing) > 0 {
		stored, err := p.Store.LoadSeries(ctx, identity, missing, consistent)
		if err != nil {
			return nil, fmt.Errorf("load records of identity %s: %w", identity, err)
		}
		for _, prim := range missing {
			key := SeriesKey{IdentityUUID: identity, Primitive: prim}
			rec := stored[prim]
			if rec == nil {
				rec = NewSeriesRecord(key, p.Registry.Kind(prim), p.Thresholds)
			}
			rec.Key = key
			p.cache.putSeries(rec)
			out[prim] = rec.Clone()
		}
	}
	return out, nil
}

func (p *Processor) loadIdentity(ctx context.Context, identity string, consistent bool) (*IdentityRecord, error) {
	if rec, ok := p.cache.identity(identity); ok {
		return rec, nil
	}
	rec, err := p.Store.LoadIdentity(ctx, identity, consistent)
	if err != nil {
		return nil, fmt.Errorf("load identity %s: %w", identity, err)
	}
	rec.IdentityUUID = identity
	p.cache.putIdentity(rec)
	return rec.Clone(), nil
}
