package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

// Reference is what the in-memory engine makes of a sequence of messages
// applied one at a time: the events it emits and the final records.
type Reference struct {
	Events     []attribution.Event // in emission order
	Records    map[attribution.SeriesKey]*attribution.SeriesRecord
	Identities map[string]*attribution.IdentityRecord
	Rejected   int
	// Reports are the reasons given for identity events applied and still
	// reported as invalid (an unmerge of a merge not seen yet), by envelope
	// id.
	Reports map[string]string
}

// Replay runs bodies, in order, through the processor over the in-memory
// store, one message at a time.
func Replay(ctx context.Context, bodies []string, reg attribution.Registry, t attribution.Thresholds) (*Reference, error) {
	ref, _, err := replay(ctx, bodies, reg, t)
	return ref, err
}

// replay is Replay that also returns the journal of what it applied, as
// the linearizer records it, and the store.
func replay(ctx context.Context, bodies []string, reg attribution.Registry, t attribution.Thresholds) (*Reference, *journaling, error) {
	store := &journaling{Store: memstore.New()}
	pub := &capture{}
	proc := &attribution.Processor{
		Store: store, Identities: store, Publisher: pub,
		Registry: reg, Thresholds: t,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Concurrency: 1,
	}
	ref := &Reference{Records: map[attribution.SeriesKey]*attribution.SeriesRecord{}, Reports: map[string]string{}}
	for i, b := range bodies {
		err := proc.Process(ctx, []attribution.Message{{ID: fmt.Sprint("m", i), Body: []byte(b)}})[0]
		if err != nil {
			if attribution.ErrorCode(err) != attribution.EINVALID {
				return nil, nil, fmt.Errorf("replay message %d: %w", i, err)
			}
			ref.Rejected++
			if d, derr := attribution.Decode([]byte(b)); derr == nil && d.Identity != nil {
				ref.Reports[d.Identity.Stamp.ID] = err.Error()
			}
		}
	}
	ref.Events = pub.events
	for _, r := range store.Records() {
		ref.Records[r.Key] = r
	}
	ref.Identities = store.IdentityRecords()
	return ref, store, nil
}

// journaling is the in-memory store keeping a journal of what it applied.
type journaling struct {
	*memstore.Store
	journal []applied
}

func (j *journaling) Commit(ctx context.Context, c *attribution.Commit) error {
	if err := j.Store.Commit(ctx, c); err != nil {
		return err
	}
	for _, o := range c.Applied {
		j.journal = append(j.journal, applied{observation: &o})
	}
	return nil
}

func (j *journaling) CommitMembership(ctx context.Context, c *attribution.MembershipCommit) error {
	// A seal, or its release, writes identity records and changes nothing
	// of the membership: it is not a change.
	moves := len(c.Attackers) > 0 || len(c.Series) > 0
	for _, r := range c.Identities {
		before, err := j.Store.LoadIdentity(ctx, r.IdentityUUID, true)
		if err != nil {
			return err
		}
		moves = moves || before.Membership != r.Membership || before.ParentStamp != r.ParentStamp
	}
	if err := j.Store.CommitMembership(ctx, c); err != nil || !moves {
		return err
	}
	m := &membershipApplied{parentStamps: map[string]attribution.Stamp{}}
	for _, a := range c.Attackers {
		m.attacker, m.identity, m.stamp = a.AttackerUUID, a.IdentityUUID, a.Stamp
	}
	for _, r := range c.Identities {
		m.parentStamps[r.IdentityUUID] = r.ParentStamp
	}
	j.journal = append(j.journal, applied{membership: m})
	return nil
}

// capture is a Publisher keeping what it is given.
type capture struct{ events []attribution.Event }

func (c *capture) Publish(_ context.Context, events []attribution.Event) error {
	c.events = append(c.events, events...)
	return nil
}

// appliedBodies turns the journal back into message bodies, in the order
// DynamoDB applied them: each observation, and for each membership change
// the identity event that made it (a formed event narrowed to the attacker
// the change moved).
func appliedBodies(journal []applied, events map[string]*identityEvent) ([]string, error) {
	out := make([]string, 0, len(journal))
	used := map[string]bool{} // merges and unmerges, which apply at most once
	for i, a := range journal {
		if o := a.observation; o != nil {
			b, err := json.Marshal(o)
			if err != nil {
				return nil, fmt.Errorf("encode applied observation %s: %w", o.EvidenceRef, err)
			}
			out = append(out, string(b))
			continue
		}
		m := a.membership
		if m.attacker != "" {
			ie := events[m.stamp.ID]
			if ie == nil || ie.ev.Identity != m.identity || ie.ev.Stamp != m.stamp || !slices.Contains(ie.ev.Attackers, m.attacker) {
				return nil, fmt.Errorf("membership change %d moved attacker %s to %s with stamp %+v: no identity event sent says so", i, m.attacker, m.identity, m.stamp)
			}
			out = append(out, ie.forAttacker(m.attacker))
			continue
		}
		var found []*identityEvent
		for id, ps := range m.parentStamps {
			ie := events[ps.ID]
			if ie != nil && !used[ps.ID] && ie.ev.Loser == id && ie.ev.Stamp == ps &&
				(ie.ev.Topic == attribution.TopicIdentityMerged || ie.ev.Topic == attribution.TopicIdentityUnmerged) {
				found = append(found, ie)
			}
		}
		if len(found) != 1 {
			return nil, fmt.Errorf("membership change %d (parent stamps %v): %d merges or unmerges sent explain it, want one", i, m.parentStamps, len(found))
		}
		used[found[0].ev.Stamp.ID] = true
		out = append(out, found[0].msg.Body)
	}
	return out, nil
}

// journalObservations returns the observations of the journal, in order.
func journalObservations(journal []applied) []attribution.Observation {
	var out []attribution.Observation
	for _, a := range journal {
		if a.observation != nil {
			out = append(out, *a.observation)
		}
	}
	return out
}
