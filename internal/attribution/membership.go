package attribution

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// resolution is where an attacker's observations go: its canonical
// identity, the membership version it was read at and the identity's
// members (whose stored series make up the identity's series).
type resolution struct {
	identity   string
	membership int64
	members    []string
}

// resolve finds the canonical identity of attacker: its literal identity,
// then merges followed to the end of the chain. The canonical identity's
// record must list the attacker as a member: reads of several items are not
// atomic, and a membership change committed between them shows as a
// missing member, then everything is read again consistently.
func (p *Processor) resolve(ctx context.Context, attacker string, consistent bool) (resolution, error) {
	if !consistent {
		if r, ok := p.cache.attacker(attacker); ok {
			return r, nil
		}
	}
	for attempt := 0; attempt < 3; attempt++ {
		fresh := consistent || attempt > 0
		var literal string
		if fresh {
			rec, err := p.Identities.LoadAttacker(ctx, attacker)
			if err != nil {
				return resolution{}, fmt.Errorf("resolve identity of attacker %s: %w", attacker, err)
			}
			literal = rec.IdentityUUID
		}
		if literal == "" {
			id, err := p.Identities.Identity(ctx, attacker, StubIdentityID(attacker))
			if err != nil {
				return resolution{}, fmt.Errorf("resolve identity of attacker %s: %w", attacker, err)
			}
			literal = id
		}
		if literal == StubIdentityID(attacker) && !fresh {
			// An attacker still on its stub never left it (no identity
			// event names a stub): the stub's membership is the attacker
			// alone, at version 0. If it did leave meanwhile, the stub's
			// records carry a later version and the plan resolves again.
			r := resolution{identity: literal, members: []string{attacker}}
			p.cache.putAttacker(attacker, r)
			return r, nil
		}
		id := literal
		var rec *IdentityRecord
		for hops := 0; ; hops++ {
			if hops > MaxMergeChain {
				return resolution{}, fmt.Errorf("resolve identity of attacker %s: more than %d merges from %s", attacker, MaxMergeChain, literal)
			}
			var err error
			if fresh {
				p.cache.forgetIdentity(id)
			}
			if rec, err = p.loadIdentity(ctx, id, fresh); err != nil {
				return resolution{}, err
			}
			if rec.Parent == "" {
				break
			}
			id = rec.Parent
		}
		if rec.HasMember(id, attacker) {
			r := resolution{identity: id, membership: rec.Membership, members: slices.Clone(rec.EffectiveMembers(id, attacker))}
			p.cache.putAttacker(attacker, r)
			return r, nil
		}
	}
	return resolution{}, &Error{Code: ECONFLICT, Message: fmt.Sprintf("attacker %s: its membership kept changing while it was resolved; retry", attacker)}
}

// unionReads bounds the concurrent reads of one union.
const unionReads = 8

// loadUnion reads the stored series of every member for each primitive:
// the observations of an identity's series, by primitive.
func (p *Processor) loadUnion(ctx context.Context, members, primitives []string) (map[string][]Observation, error) {
	type job struct{ member, primitive string }
	var jobs []job
	for _, prim := range primitives {
		for _, m := range members {
			jobs = append(jobs, job{m, prim})
		}
	}
	out := make(map[string][]Observation, len(primitives))
	var mu sync.Mutex
	var firstErr error
	limit := make(chan struct{}, unionReads)
	var wg sync.WaitGroup
	for _, j := range jobs {
		limit <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-limit; wg.Done() }()
			key := SeriesKey{IdentityUUID: StubIdentityID(j.member), Primitive: j.primitive}
			obs, err := p.Store.LoadObservations(ctx, key)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("load series %s of attacker %s: %w", key, j.member, err)
				}
				return
			}
			out[j.primitive] = append(out[j.primitive], obs...)
		}()
	}
	wg.Wait()
	return out, firstErr
}

// applyIdentityEvent applies one identity event of DECNET's clusterer. Each
// fact it sets (an attacker's identity, an identity's merge) keeps the
// event's stamp, and an event not newer than the fact's stamp changes
// nothing: redeliveries and late arrivals are no-ops. identity.formed is
// applied one attacker at a time, each an atomic change.
func (p *Processor) applyIdentityEvent(ctx context.Context, ev *IdentityEvent) error {
	switch ev.Topic {
	case TopicIdentityFormed, TopicIdentityLinked:
		for _, a := range ev.Attackers {
			if err := p.changeMembership(ctx, ev, a); err != nil {
				return err
			}
		}
		return nil
	default:
		return p.changeMembership(ctx, ev, "")
	}
}

// changeMembership plans, commits and publishes one membership change,
// planning again after a version conflict (a concurrent writer won).
func (p *Processor) changeMembership(ctx context.Context, ev *IdentityEvent, attacker string) (err error) {
	// sealed holds the identities an attempt sealed: a later attempt may
	// no longer affect them, and its commit clears those seals too; a
	// change that ends without committing releases them.
	sealed := make(map[string]bool)
	committed := false
	defer func() {
		if !committed && len(sealed) > 0 {
			p.releaseSeals(ctx, ev.Stamp, sealed)
		}
	}()
	for conflicts, waits := 0, 0; ; {
		ch, err := p.planMembership(ctx, ev, attacker)
		if err != nil {
			return err
		}
		ch.sealed = sealed
		if !ch.changes() {
			// Nothing to change: this event is a redelivery or was
			// superseded. Its first delivery may have died before
			// publishing; publish what is pending where it applied.
			if err := p.flushIdentities(ctx, ch.flush); err != nil {
				return err
			}
			return ch.report
		}
		err = p.commitMembership(ctx, ch)
		committed = err == nil
		if held := (*sealedError)(nil); errors.As(err, &held) {
			// Wait for the other change, at most until its seal expires.
			waits++
			if waits > p.maxConflicts() {
				return fmt.Errorf("%s: gave up after waiting %d times: %w", ev.Topic, waits, err)
			}
			p.sleep(ctx, max(0, held.expires.Sub(p.now()))+conflictDelay(waits))
			continue
		}
		if errors.Is(err, ErrVersionConflict) {
			conflicts++
			p.count(MetricVersionConflicts, 1)
			if conflicts > p.maxConflicts() {
				return fmt.Errorf("%s: gave up after %d version conflicts in a row: %w", ev.Topic, conflicts, err)
			}
			p.sleep(ctx, conflictDelay(conflicts))
			continue
		}
		if err != nil {
			return err
		}
		if ch.recomputed {
			p.count(MetricMembership, 1)
		}
		p.count(MetricTransitions, ch.transitions)
		p.count(MetricSuspicions, ch.suspicions)
		p.count(MetricRekeyed, ch.rekeyed)
		if err := p.publishMembership(ctx, ch.commit); err != nil {
			return err
		}
		return ch.report
	}
}

// commitMembership seals the identities the change affects, reads and
// settles their records, and commits it all in one transaction.
func (p *Processor) commitMembership(ctx context.Context, ch *membershipChange) error {
	if err := p.seal(ctx, ch); err != nil {
		return err
	}
	if err := p.settleMembership(ctx, ch); err != nil {
		return err
	}
	if ch.unflushed != nil {
		*ch.unflushed = ch.commit.owing()
	}
	if n := ch.commit.Items(); n > MaxCommitItems {
		return fmt.Errorf("%s: the change writes %d items, more than the %d of one transaction", ch.ev.Topic, n, MaxCommitItems)
	}
	err := p.Store.CommitMembership(ctx, ch.commit)
	for _, r := range ch.commit.Identities {
		p.cache.forgetIdentity(r.IdentityUUID)
	}
	p.cache.forgetAttackers(ch.moved)
	if errors.Is(err, ErrVersionConflict) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%s: commit membership change: %w", ch.ev.Topic, err)
	}
	p.cache.putMembership(ch.commit)
	return nil
}

// sealedError reports that another membership change holds an identity
// a change affects: it waits, at most until the seal expires.
type sealedError struct {
	identity, change string
	expires          time.Time // when the seal may be taken over
}

func (e *sealedError) Error() string {
	return fmt.Sprintf("identity %s is being changed by identity event %s; retry", e.identity, e.change)
}

// seal marks, before the change reads their records, every identity it
// affects with the change's stamp. A series created by a single write
// after the seal fails its check (and is routed again); one created
// before it is among the records read. The commit clears the seals. A
// live seal of another change makes this one wait; an expired one is
// taken over.
func (p *Processor) seal(ctx context.Context, ch *membershipChange) error {
	now := p.now()
	var seals []*IdentityRecord
	affected := ch.affected()
	for id := range ch.sealed {
		if slices.Contains(affected, id) {
			continue
		}
		// Sealed by an earlier attempt, no longer affected: the commit
		// writes it unchanged but for the seal.
		n, err := p.node(ctx, ch, id)
		if err != nil {
			return err
		}
		if n.Seal == ch.ev.Stamp {
			n.Seal, n.SealedAt = Stamp{}, 0
			ch.dirty[id] = true
		}
	}
	for _, id := range affected {
		stored, n := ch.stored[id], ch.nodes[id]
		n.Seal, n.SealedAt = Stamp{}, 0 // the commit clears it
		if stored.Seal == ch.ev.Stamp {
			continue // an earlier attempt of this change sealed it
		}
		if stored.Sealed(now) {
			// Another change is under way: let go of what this one holds
			// and wait, so that two changes never wait on each other.
			p.releaseSeals(ctx, ch.ev.Stamp, ch.sealed)
			clear(ch.sealed)
			return &sealedError{identity: id, change: stored.Seal.ID, expires: stored.sealExpires()}
		}
		s := stored.Clone()
		s.sealBy(ch.ev.Stamp, now)
		seals = append(seals, s)
	}
	if len(seals) == 0 {
		return nil
	}
	err := p.Store.CommitMembership(ctx, &MembershipCommit{Identities: seals})
	for _, s := range seals {
		p.cache.forgetIdentity(s.IdentityUUID)
	}
	switch {
	case errors.Is(err, ErrVersionConflict):
		return err
	case err != nil:
		return fmt.Errorf("%s: seal identities: %w", ch.ev.Topic, err)
	}
	for _, s := range seals {
		ch.nodes[s.IdentityUUID].Version = s.Version + 1
		ch.sealed[s.IdentityUUID] = true
	}
	return nil
}

// releaseSeals clears, where it still stands, the seal a change that ends
// without committing set. It is a courtesy: a seal left behind expires.
func (p *Processor) releaseSeals(ctx context.Context, stamp Stamp, ids map[string]bool) {
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		for attempt := 0; ; attempt++ {
			n, err := p.Store.LoadIdentity(ctx, id, true)
			if err == nil && n.Seal != stamp {
				break
			}
			if err == nil {
				n.IdentityUUID, n.Seal, n.SealedAt = id, Stamp{}, 0
				err = p.Store.CommitMembership(ctx, &MembershipCommit{Identities: []*IdentityRecord{n}})
			}
			p.cache.forgetIdentityRecord(id)
			if err == nil {
				break
			}
			if attempt == 2 || !errors.Is(err, ErrVersionConflict) {
				p.Logger.LogAttrs(ctx, slog.LevelWarn, "seal not released; it expires", slog.String("identity", id), slog.String("seal", stamp.ID), slog.Any("error", err))
				break
			}
		}
	}
}

// membershipChange is one planned change.
type membershipChange struct {
	ev       *IdentityEvent
	attacker string // the attacker linked, for formed and linked
	commit   *MembershipCommit
	// report is an invalid-input error about an event that was applied all
	// the same (an unmerge of a merge not seen: its stamp is kept so that
	// the merge, arriving late, changes nothing).
	report error
	sealed map[string]bool // identities this change sealed
	moved  []string        // attackers whose canonical identity may change
	flush  []string        // identities whose pending events a no-op publishes
	// unflushed is the principal's list of the identities the change
	// leaves events to publish in (see planMembership).
	unflushed  *[]string
	recomputed bool
	// transitions, suspicions and rekeyed identities are counted once the
	// change is committed: a conflict plans it again.
	transitions, suspicions, rekeyed int

	nodes  map[string]*IdentityRecord
	stored map[string]*IdentityRecord // each node as read
	before map[string]nodeBefore
	dirty  map[string]bool // nodes to write
}

// changes reports whether the planned change writes anything.
func (ch *membershipChange) changes() bool {
	return len(ch.dirty) > 0 || len(ch.commit.Attackers) > 0
}

// affected returns the identities canonical before or after the change
// whose membership it changes: their records are read, and rewritten
// under the new membership version.
func (ch *membershipChange) affected() []string {
	var out []string
	for _, id := range slices.Sorted(maps.Keys(ch.dirty)) {
		n, before := ch.nodes[id], ch.before[id]
		if n.Membership == before.membership || !before.canonical && n.Parent != "" {
			continue
		}
		out = append(out, id)
	}
	return out
}

// nodeBefore is what a node was before the change.
type nodeBefore struct {
	canonical  bool
	members    []string
	membership int64
}

func (ch *membershipChange) invalid(field, format string, args ...any) error {
	return Invalidf(field, "%s: "+format, append([]any{ch.ev.Topic}, args...)...)
}

// node returns the working copy of an identity's record, read consistently
// once per plan.
func (p *Processor) node(ctx context.Context, ch *membershipChange, id string) (*IdentityRecord, error) {
	if n := ch.nodes[id]; n != nil {
		return n, nil
	}
	n, err := p.Store.LoadIdentity(ctx, id, true)
	if err != nil {
		return nil, fmt.Errorf("load identity %s: %w", id, err)
	}
	n.IdentityUUID = id
	ch.nodes[id] = n
	ch.stored[id] = n.Clone()
	ch.before[id] = nodeBefore{canonical: n.Parent == "", members: slices.Clone(n.EffectiveMembers(id, ch.attacker)), membership: n.Membership}
	return n, nil
}

// chain returns id and the identities it is merged into, up to the
// canonical one.
func (p *Processor) chain(ctx context.Context, ch *membershipChange, id string) ([]*IdentityRecord, error) {
	var out []*IdentityRecord
	for x := id; x != ""; {
		if len(out) > MaxMergeChain {
			return nil, fmt.Errorf("identity %s: more than %d merges in its chain", id, MaxMergeChain)
		}
		n, err := p.node(ctx, ch, x)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
		x = n.Parent
	}
	return out, nil
}

// regroup adds members to (or removes them from) id and every identity it
// is merged into.
func (p *Processor) regroup(ctx context.Context, ch *membershipChange, id string, members []string, add bool) error {
	nodes, err := p.chain(ctx, ch, id)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		set := slices.Clone(n.EffectiveMembers(n.IdentityUUID, ch.attacker))
		for _, m := range members {
			i, found := slices.BinarySearch(set, m)
			switch {
			case add && !found:
				set = slices.Insert(set, i, m)
			case !add && found:
				set = slices.Delete(set, i, i+1)
			}
		}
		n.Members, n.Membered = set, true
		n.Membership++
		ch.dirty[n.IdentityUUID] = true
	}
	return nil
}

func (p *Processor) planMembership(ctx context.Context, ev *IdentityEvent, attacker string) (*membershipChange, error) {
	ch := &membershipChange{
		ev: ev, attacker: attacker, commit: &MembershipCommit{},
		nodes: make(map[string]*IdentityRecord), stored: make(map[string]*IdentityRecord), before: make(map[string]nodeBefore), dirty: make(map[string]bool),
	}
	newer := func(fact Stamp) bool { return fact.IsZero() || ev.Stamp.Compare(fact) > 0 }
	// unflushed is the principal's list of the identities the change
	// leaves events to publish in: on the attacker's record, or the
	// loser's. What the principal's previous
	// change left pending is published first, since this one overwrites
	// the list that finds it.
	var unflushed *[]string
	var changed *IdentityRecord // the loser of a merge or an unmerge this event changes
	// changedLoser returns the loser's record if this event changes it,
	// else nil.
	changedLoser := func() (*IdentityRecord, error) {
		var loser *IdentityRecord
		for flushed := false; ; flushed = true {
			var err error
			if loser, err = p.node(ctx, ch, ev.Loser); err != nil {
				return nil, err
			}
			ch.flush = append([]string{ev.Winner, ev.Loser}, loser.Unflushed...)
			if !newer(loser.ParentStamp) {
				if loser.ParentStamp == ev.Stamp {
					ch.report = loser.Report.err() // this event, delivered again
				}
				return nil, nil
			}
			if flushed || len(loser.Unflushed) == 0 {
				break
			}
			if err := p.flushIdentities(ctx, loser.Unflushed); err != nil {
				return nil, err
			}
			// Read it again: the flush may have acknowledged its events,
			// and another change may have committed meanwhile.
			delete(ch.nodes, ev.Loser)
		}
		loser.ParentStamp = ev.Stamp
		ch.dirty[ev.Loser] = true
		unflushed = &loser.Unflushed
		changed = loser
		return loser, nil
	}
	switch ev.Topic {
	case TopicIdentityFormed, TopicIdentityLinked:
		ar, err := p.Identities.LoadAttacker(ctx, attacker)
		if err != nil {
			return nil, fmt.Errorf("load attacker %s: %w", attacker, err)
		}
		ar.AttackerUUID = attacker
		ch.flush = append([]string{ev.Identity}, ar.Unflushed...)
		if !newer(ar.Stamp) {
			return ch, nil
		}
		if err := p.flushIdentities(ctx, ar.Unflushed); err != nil {
			return nil, err
		}
		old := ar.IdentityUUID
		if old == "" {
			// Never seen: its stub would be its identity. Its record is
			// written all the same, so that a first sighting racing with
			// this change cannot create series under the stub.
			old = StubIdentityID(attacker)
		}
		ar.IdentityUUID, ar.Stamp = ev.Identity, ev.Stamp
		ch.commit.Attackers = append(ch.commit.Attackers, ar)
		ch.moved = []string{attacker}
		unflushed = &ar.Unflushed
		if old != ev.Identity {
			if err := p.regroup(ctx, ch, old, []string{attacker}, false); err != nil {
				return nil, err
			}
			if err := p.regroup(ctx, ch, ev.Identity, []string{attacker}, true); err != nil {
				return nil, err
			}
		}
	case TopicIdentityMerged:
		loser, err := changedLoser()
		if loser == nil || err != nil {
			return ch, err
		}
		winnerChain, err := p.chain(ctx, ch, ev.Winner)
		if err != nil {
			return nil, err
		}
		for _, n := range winnerChain {
			if n.IdentityUUID == ev.Loser {
				return nil, ch.invalid("payload.winner_uuid", "merging %s into %s would form a cycle: %s is already merged into %s (%s)",
					ev.Loser, ev.Winner, ev.Winner, ev.Loser, chainText(winnerChain))
			}
		}
		if loser.Parent != ev.Winner {
			members := slices.Clone(loser.EffectiveMembers(ev.Loser, ""))
			ch.moved = members
			if err := p.detach(ctx, ch, loser, members); err != nil {
				return nil, err
			}
			loser.Parent = ev.Winner
			winner := winnerChain[0]
			if i, found := slices.BinarySearch(winner.Children, ev.Loser); !found {
				winner.Children = slices.Insert(winner.Children, i, ev.Loser)
			}
			ch.dirty[ev.Winner] = true
			if err := p.regroup(ctx, ch, ev.Winner, members, true); err != nil {
				return nil, err
			}
			// The loser's own membership did not change, but it is no
			// longer canonical: its version moves so that writes planned
			// while it was are refused.
			loser.Membership++
		}
	case TopicIdentityUnmerged:
		loser, err := changedLoser()
		if loser == nil || err != nil {
			return ch, err
		}
		if loser.Parent == "" {
			ch.report = ch.invalid("payload.resurrected_uuid", "no merge of %s into %s has been seen (kept, so that the merge arriving later changes nothing)", ev.Loser, ev.Winner)
			break
		}
		chainNodes, err := p.chain(ctx, ch, loser.Parent)
		if err != nil {
			return nil, err
		}
		if !onChainAt(chainNodes, ev.Winner, ev.Stamp) {
			ch.report = ch.invalid("payload.former_winner_uuid", "%s is merged into %s, not into %s (revoked all the same)", ev.Loser, chainText(chainNodes), ev.Winner)
		}
		members := slices.Clone(loser.EffectiveMembers(ev.Loser, ""))
		ch.moved = members
		if err := p.detach(ctx, ch, loser, members); err != nil {
			return nil, err
		}
		loser.Parent = ""
		loser.Membership++
	}
	if changed != nil {
		changed.Report = reportOf(ch.report)
	}
	ch.unflushed = unflushed
	return ch, nil
}

// owing returns the identities whose records the commit writes with events
// still to publish, sorted.
func (c *MembershipCommit) owing() []string {
	ids := make(map[string]bool)
	for _, r := range c.Identities {
		if len(r.Pending()) > 0 {
			ids[r.IdentityUUID] = true
		}
	}
	for _, r := range c.Series {
		if len(r.Pending()) > 0 {
			ids[r.Key.IdentityUUID] = true
		}
	}
	return slices.Sorted(maps.Keys(ids))
}

// detach takes a merged identity and its members out of the identities it
// is merged into.
func (p *Processor) detach(ctx context.Context, ch *membershipChange, n *IdentityRecord, members []string) error {
	if n.Parent == "" {
		return nil
	}
	parent, err := p.node(ctx, ch, n.Parent)
	if err != nil {
		return err
	}
	if i, found := slices.BinarySearch(parent.Children, n.IdentityUUID); found {
		parent.Children = slices.Delete(parent.Children, i, i+1)
	}
	ch.dirty[parent.IdentityUUID] = true
	return p.regroup(ctx, ch, n.Parent, members, false)
}

// onChainAt reports whether winner is on the chain as it stood at stamp s:
// found on it, or the chain changed after s at some hop (then what it was
// cannot be told, and the unmerge is taken at its word).
func onChainAt(chain []*IdentityRecord, winner string, s Stamp) bool {
	for _, n := range chain {
		if n.IdentityUUID == winner {
			return true
		}
		if n.ParentStamp.Compare(s) > 0 {
			return true
		}
	}
	return false
}

func chainText(chain []*IdentityRecord) string {
	ids := make([]string, len(chain))
	for i, n := range chain {
		ids[i] = n.IdentityUUID
	}
	return strings.Join(ids, " → ")
}

// settleMembership recomputes, from the stored observations of their new
// members, the series of every identity that is canonical after the change
// and whose membership changed; freezes those of identities that stopped
// being canonical (with a rekeyed event); and puts every changed record in
// the commit. A transition is settled like a rebuild's, in the record's
// outbox: W's series moves from W's prior state.
func (p *Processor) settleMembership(ctx context.Context, ch *membershipChange) error {
	ids := slices.Sorted(maps.Keys(ch.dirty))
	affected := ch.affected()
	records := make(map[string]map[string]*SeriesRecord, len(affected))
	primitives := make(map[string]bool)
	orphans := make(map[string]map[string]*SeriesRecord)
	for _, id := range affected {
		recs, err := p.Store.LoadIdentitySeries(ctx, id)
		if err != nil {
			return fmt.Errorf("load series of identity %s: %w", id, err)
		}
		// An orphan holds nothing acknowledged: it is left out, and
		// written over if the identity's series needs its key.
		orphans[id] = make(map[string]*SeriesRecord)
		for prim, rec := range recs {
			if rec.Orphaned(ch.before[id].membership) {
				orphans[id][prim] = rec
				delete(recs, prim)
			}
		}
		records[id] = recs
		for prim := range recs {
			primitives[prim] = true
		}
	}
	// The union is read from the observations table: first write the items
	// of what the records hold inline. Every record is rewritten below
	// without them; a writer adding one meanwhile fails the commit.
	if err := p.flushInline(ctx, records); err != nil {
		return err
	}
	union := slices.Sorted(maps.Keys(primitives))
	for _, id := range affected {
		n, before := ch.nodes[id], ch.before[id]
		recs := records[id]
		live := n.Parent == "" && len(n.Members) > 0
		wasLive := before.canonical && len(before.members) > 0
		if !live {
			for _, prim := range slices.Sorted(maps.Keys(recs)) {
				rec := recs[prim]
				rec.Membership, rec.Young = n.Membership, false
				ch.commit.Series = append(ch.commit.Series, rec)
			}
			if wasLive && len(recs) > 0 {
				into, err := p.into(ctx, ch, n)
				if err != nil {
					return err
				}
				n.Into = into
				if err := n.rekey(into, ch.ev.Topic, slices.Sorted(maps.Keys(recs)), ch.ev.Stamp.TS); err != nil {
					return err
				}
				ch.rekeyed++
			}
			continue
		}
		n.Into = ""
		ch.recomputed = true
		obs, err := p.loadUnion(ctx, n.Members, union)
		if err != nil {
			return err
		}
		var changed []*SeriesRecord
		for _, prim := range union {
			rec := recs[prim]
			if rec == nil && len(obs[prim]) == 0 {
				continue
			}
			key := SeriesKey{IdentityUUID: id, Primitive: prim}
			kind := p.Registry.Kind(prim)
			switch orphan := orphans[id][prim]; {
			case rec == nil && orphan != nil:
				rec = orphan.Replacement(kind, p.Thresholds)
				rec.Complete = false // its observations are items
			case rec == nil:
				rec = NewSeriesRecord(key, kind, p.Thresholds)
				rec.Complete = false
			}
			rec.Key = key
			if len(rec.Pending()) >= MaxPendingEvents {
				return &Error{Code: ECONFLICT, Message: fmt.Sprintf("series %s has %d events the bus has not accepted yet; retry later", key, len(rec.Pending()))}
			}
			var change *StateChanged
			if len(obs[prim]) == 0 {
				rec.Series = EmptySeries(kind, p.Thresholds)
				change, err = rec.Settle(State{State: StateUnknown, CurrentValue: Null}, rec.AttackerUUID)
			} else {
				change, err = rec.Rebuild(kind, obs[prim], p.Thresholds)
			}
			if err != nil {
				return fmt.Errorf("recompute series %s: %w", key, err)
			}
			if change != nil {
				ch.transitions++
			}
			rec.Membership, rec.Young = n.Membership, false
			ch.commit.Series = append(ch.commit.Series, rec)
			changed = append(changed, rec)
		}
		if s, owner, _ := n.ReconcileAll(changed, p.Thresholds); s != nil {
			if err := owner.Enqueue(s); err != nil {
				return err
			}
			ch.suspicions++
		}
	}
	for _, id := range ids {
		ch.commit.Identities = append(ch.commit.Identities, ch.nodes[id])
	}
	return nil
}

// flushInline writes the items of every inline observation of records and
// leaves the records holding none.
func (p *Processor) flushInline(ctx context.Context, records map[string]map[string]*SeriesRecord) error {
	var writes []ObservationWrite
	for _, recs := range records {
		for _, rec := range recs {
			for _, o := range rec.Inline {
				writes = append(writes, o.Write())
			}
			rec.Inline, rec.Complete = nil, false
		}
	}
	if len(writes) == 0 {
		return nil
	}
	if err := p.Store.PutObservations(ctx, writes); err != nil {
		return fmt.Errorf("write inline observations before a membership change: %w", err)
	}
	return nil
}

// into is where the series of a retired identity went: the canonical
// identity it is merged into, else that of the attackers that left it.
func (p *Processor) into(ctx context.Context, ch *membershipChange, n *IdentityRecord) (string, error) {
	start := n.Parent
	if start == "" {
		switch ch.ev.Topic {
		case TopicIdentityUnmerged:
			return ch.ev.Loser, nil // a winner left with no attacker of its own
		case TopicIdentityMerged:
			start = ch.ev.Winner
		default:
			start = ch.ev.Identity
		}
	}
	nodes, err := p.chain(ctx, ch, start)
	if err != nil {
		return "", err
	}
	return nodes[len(nodes)-1].IdentityUUID, nil
}

// publishMembership publishes the pending events of everything a membership
// change wrote and acknowledges what the bus took.
func (p *Processor) publishMembership(ctx context.Context, c *MembershipCommit) error {
	var events []Event
	owner := make(map[string]SeriesKey)
	for _, r := range c.Series {
		for _, e := range r.Pending() {
			events = append(events, e)
			owner[e.ID] = r.Key
		}
	}
	for _, r := range c.Identities {
		for _, e := range r.Pending() {
			events = append(events, e)
			owner[e.ID] = SeriesKey{IdentityUUID: r.IdentityUUID, Primitive: IdentityRecordKey}
		}
	}
	return p.publishOutboxEvents(ctx, events, owner)
}

// flushIdentities publishes what is pending in the outboxes of identities
// a membership event concerned, of the identities they are merged into,
// and of their series: a canonical one's were recomputed, a retired one's
// frozen with what they held.
func (p *Processor) flushIdentities(ctx context.Context, ids []string) error {
	var events []Event
	owner := make(map[string]SeriesKey)
	seen := make(map[string]bool)
	for _, start := range ids {
		for id, hops := start, 0; id != "" && !seen[id] && hops <= MaxMergeChain; hops++ {
			seen[id] = true
			n, err := p.Store.LoadIdentity(ctx, id, true)
			if err != nil {
				return fmt.Errorf("load identity %s: %w", id, err)
			}
			for _, e := range n.Pending() {
				events = append(events, e)
				owner[e.ID] = SeriesKey{IdentityUUID: id, Primitive: IdentityRecordKey}
			}
			if n.Version > 0 {
				recs, err := p.Store.LoadIdentitySeries(ctx, id)
				if err != nil {
					return fmt.Errorf("load series of identity %s: %w", id, err)
				}
				vouch := n
				if slices.ContainsFunc(slices.Collect(maps.Values(recs)), func(r *SeriesRecord) bool { return r.Young }) {
					// Read after the records: see IdentityRecord.Vouches.
					if vouch, err = p.Store.LoadIdentity(ctx, id, true); err != nil {
						return fmt.Errorf("load identity %s: %w", id, err)
					}
				}
				for _, prim := range slices.Sorted(maps.Keys(recs)) {
					if !vouch.Vouches(recs[prim]) {
						continue
					}
					for _, e := range recs[prim].Pending() {
						events = append(events, e)
						owner[e.ID] = SeriesKey{IdentityUUID: id, Primitive: prim}
					}
				}
			}
			id = n.Parent
		}
	}
	return p.publishOutboxEvents(ctx, events, owner)
}

// publishOutboxEvents publishes outbox events and acknowledges, per owner,
// the prefix the bus took. It fails when any retryable event was not taken:
// the message is delivered again and publishes them again, same IDs.
func (p *Processor) publishOutboxEvents(ctx context.Context, events []Event, owner map[string]SeriesKey) error {
	d, err := p.courier().Deliver(ctx, events, owner)
	p.acknowledge(ctx, d.Acked, nil)
	if len(d.Blocked) > 0 {
		return fmt.Errorf("publish events: %w", err)
	}
	return nil
}
