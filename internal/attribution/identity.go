package attribution

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// DECNET's identity clusterer publishes these topics on its bus.
const (
	TopicIdentityFormed   = "identity.formed"
	TopicIdentityLinked   = "identity.observation.linked"
	TopicIdentityMerged   = "identity.merged"
	TopicIdentityUnmerged = "identity.unmerged"
	// TopicCampaignAssigned shares the identity.> family but says nothing
	// about membership: it is accepted and ignored.
	TopicCampaignAssigned = "identity.campaign.assigned"
)

// IdentityTopicPrefix starts every topic of the identity family.
const IdentityTopicPrefix = "identity."

// MaxMergeChain bounds how many merges are followed from an identity to its
// canonical one; a longer chain is reported rather than followed forever.
const MaxMergeChain = 64

// Stamp orders identity events as DECNET published them: by the bus
// envelope's ts, then its id. Each membership fact (an attacker's identity,
// an identity's merge) keeps the stamp of the event that set it, and an
// event older than that stamp changes nothing: so the facts converge on
// DECNET's final ones whatever order the events arrive in.
type Stamp struct {
	TS float64 `json:"ts"`
	ID string  `json:"id"`
}

// Compare orders stamps; the zero stamp (no event) comes first.
func (s Stamp) Compare(o Stamp) int {
	return cmp.Or(cmp.Compare(s.TS, o.TS), strings.Compare(s.ID, o.ID))
}

// IsZero reports whether no event set the fact.
func (s Stamp) IsZero() bool { return s.ID == "" }

// IdentityEvent is one decoded identity event of DECNET's clusterer.
type IdentityEvent struct {
	Topic string
	Stamp Stamp
	// Identity is the identity formed or linked to.
	Identity string
	// Attackers are the attackers (DECNET calls them observations) it names:
	// those of formed, or the one linked.
	Attackers []string
	// Winner and Loser of a merge; of an unmerge, Loser is the resurrected
	// identity and Winner the former winner.
	Winner, Loser string
}

// AttackerRecord is an attacker's literal identity: DECNET's once an
// identity event named it, else its provisional stub.
type AttackerRecord struct {
	AttackerUUID string
	// IdentityUUID is empty for an attacker never seen.
	IdentityUUID string
	// Stamp is that of the identity event that set IdentityUUID (zero for a
	// stub).
	Stamp Stamp
	// Unflushed are the identities whose records the change that set
	// IdentityUUID wrote with events to publish, sorted. Those are
	// published by a redelivery of its event (which changes nothing) or,
	// before it commits, by the attacker's next change.
	Unflushed []string
	// Version is 0 for a record never written by an identity event.
	Version int64
}

// IdentityRecordKey is the primitive under which an identity's own record
// is kept beside its series; primitive names cannot start with '#'.
const IdentityRecordKey = "#identity"

// IdentityNode is an identity's place in DECNET's merge graph and its
// membership, kept on the identity record so that a membership change and
// the records it rewrites commit together.
type IdentityNode struct {
	// Parent is the identity this one is merged into; empty when canonical.
	Parent      string `json:"parent,omitempty"`
	ParentStamp Stamp  `json:"parent_stamp,omitzero"`
	// Children are the identities merged directly into this one, sorted.
	Children []string `json:"children,omitempty"`
	// Members are the attackers resolving to this identity or to one merged
	// into it, sorted. Authoritative once Membered; before, a stub
	// identity's only member is its attacker and any other identity has none.
	Members  []string `json:"members,omitempty"`
	Membered bool     `json:"membered,omitempty"`
	// Membership counts changes of Members. Series records carry the
	// Membership they were computed under; a write planned under another is
	// refused, so no observation is routed by a stale membership.
	Membership int64 `json:"mv,omitempty"`
	// Into is, while the identity is retired (merged, or left without
	// attackers), the canonical identity that took its series.
	Into string `json:"into,omitempty"`
	// Unflushed are the identities whose records the change that set
	// Parent and ParentStamp wrote with events to publish, as on an
	// attacker's record.
	Unflushed []string `json:"unflushed,omitempty"`
	// Report is why the change that set ParentStamp was reported although
	// applied (an unmerge of a merge not seen), so that the event's
	// redelivery reports it again.
	Report *Report `json:"report,omitempty"`
	// Rekeys counts attribution.identity.rekeyed events about it.
	Rekeys int64 `json:"rekeys,omitempty"`
	// Outbox holds the rekeyed events the bus has not taken yet.
	Outbox       []Event `json:"outbox,omitempty"`
	NextPosition int64   `json:"next_position,omitempty"`
	Published    int64   `json:"-"`
}

// Report is an invalid-input error kept with the fact it was raised about.
type Report struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func reportOf(err error) *Report {
	var e *Error
	if !errors.As(err, &e) {
		return nil
	}
	return &Report{Field: e.Field, Message: e.Message}
}

func (r *Report) err() error {
	if r == nil {
		return nil
	}
	return Invalidf(r.Field, "%s", r.Message)
}

func (n IdentityNode) clone() IdentityNode {
	n.Children = slices.Clone(n.Children)
	n.Members = slices.Clone(n.Members)
	n.Unflushed = slices.Clone(n.Unflushed)
	n.Outbox = slices.Clone(n.Outbox)
	return n
}

// EffectiveMembers returns the members of identity id (whose node n is),
// resolving the implicit membership of a stub by the attacker hint: the
// attacker whose stub id may be.
func (n *IdentityNode) EffectiveMembers(id, hint string) []string {
	if n.Membered {
		return n.Members
	}
	if hint != "" && id == StubIdentityID(hint) {
		return []string{hint}
	}
	return nil
}

// HasMember reports whether attacker resolves to identity id, given that id
// is canonical.
func (n *IdentityNode) HasMember(id, attacker string) bool {
	_, found := slices.BinarySearch(n.EffectiveMembers(id, attacker), attacker)
	return found
}

// Pending returns the rekeyed events not yet acknowledged.
func (n *IdentityNode) Pending() []Event {
	var out []Event
	for _, e := range n.Outbox {
		if e.Position > n.Published {
			out = append(out, e)
		}
	}
	return out
}

func (n *IdentityNode) enqueue(e Event) {
	n.Outbox = n.Pending()
	n.NextPosition++
	e.Position = n.NextPosition
	n.Outbox = append(n.Outbox, e)
}

// EventIdentityRekeyed says that an identity stopped being canonical and
// where its series went.
const EventIdentityRekeyed = "attribution.identity.rekeyed"

// IdentityRekeyed is the detail of attribution.identity.rekeyed.
type IdentityRekeyed struct {
	EventID  string `json:"event_id"`
	Sequence int64  `json:"sequence"`
	// IdentityUUID stopped being canonical: it was merged, or its last
	// attacker was linked elsewhere.
	IdentityUUID string `json:"identity_uuid"`
	// Into is the canonical identity whose series now hold its attackers'
	// observations.
	Into string `json:"into"`
	// Primitives are those it had states for; their states are now Into's.
	Primitives []string `json:"primitives"`
	// Cause is the DECNET topic of the event that retired it.
	Cause string `json:"cause"`
	// TS is the bus envelope's ts of that event.
	TS float64 `json:"ts"`
}

// Event encodes the rekeying for the bus.
func (ev *IdentityRekeyed) Event() (Event, error) {
	return newEvent(EventIdentityRekeyed, ev.EventID, ev)
}

// rekey queues the rekeyed event of a retired identity.
func (r *IdentityRecord) rekey(into, cause string, primitives []string, ts float64) error {
	r.Rekeys++
	ev := &IdentityRekeyed{
		EventID:      EventID(EventIdentityRekeyed, r.IdentityUUID, r.Rekeys),
		Sequence:     r.Rekeys,
		IdentityUUID: r.IdentityUUID,
		Into:         into,
		Primitives:   primitives,
		Cause:        cause,
		TS:           ts,
	}
	if ev.Primitives == nil {
		ev.Primitives = []string{}
	}
	e, err := ev.Event()
	if err != nil {
		return err
	}
	r.enqueue(e)
	return nil
}

// busIdentityPayload is an identity event's payload, every field optional
// so that validation names what is missing or mistyped.
type busIdentityPayload struct {
	IdentityUUID     json.RawMessage `json:"identity_uuid"`
	ObservationUUIDs json.RawMessage `json:"observation_uuids"`
	ObservationUUID  json.RawMessage `json:"observation_uuid"`
	WinnerUUID       json.RawMessage `json:"winner_uuid"`
	LoserUUID        json.RawMessage `json:"loser_uuid"`
	ResurrectedUUID  json.RawMessage `json:"resurrected_uuid"`
	FormerWinnerUUID json.RawMessage `json:"former_winner_uuid"`
}

// MaxFormedAttackers bounds the attackers of one identity.formed.
const MaxFormedAttackers = 1000

// decodeBusIdentity reads a DECNET bus envelope published on an identity
// topic. The envelope's id and ts are required: they order the event.
// It returns nil and no error for a topic of the family that says nothing
// about membership.
func decodeBusIdentity(topic string, env envelope) (*IdentityEvent, error) {
	leaf, _ := strings.CutPrefix(topic, IdentityTopicPrefix)
	switch topic {
	case TopicIdentityFormed, TopicIdentityLinked, TopicIdentityMerged, TopicIdentityUnmerged:
	case TopicCampaignAssigned:
		return nil, nil
	default:
		return nil, Invalidf("topic", "%q is not an identity event this service reads (%s, %s, %s or %s)",
			topic, TopicIdentityFormed, TopicIdentityLinked, TopicIdentityMerged, TopicIdentityUnmerged)
	}
	if !isNull(env.MessageType) {
		typ, err := optionalString("type", env.MessageType, MaxPrimitiveBytes)
		if err != nil {
			return nil, err
		}
		if typ != "" && typ != leaf {
			return nil, Invalidf("type", "%q does not match topic %s (want %q)", typ, topic, leaf)
		}
	}
	if !isNull(env.V) {
		var v int
		if err := json.Unmarshal(env.V, &v); err != nil || v < 1 {
			return nil, Invalidf("v", "must be a positive integer envelope version, got %s", truncate(env.V))
		}
	}
	ev := &IdentityEvent{Topic: topic}
	var err error
	if ev.Stamp.ID, err = requiredString("id", env.ID, MaxEvidenceRefBytes); err != nil {
		return nil, err
	}
	if env.TS == nil {
		return nil, Invalidf("ts", "is required: it orders identity events")
	}
	if ev.Stamp.TS, err = finiteNumber("ts", env.TS); err != nil {
		return nil, err
	}
	if len(env.Payload) == 0 || env.Payload[0] != '{' {
		return nil, Invalidf("payload", "bus payload must be a JSON object")
	}
	var p busIdentityPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		return nil, Invalidf("payload", "not a JSON object: %v", err)
	}
	uuid := func(name string, raw json.RawMessage) (string, error) {
		s, err := requiredString("payload."+name, raw, MaxAttackerBytes)
		if err == nil && strings.HasPrefix(s, "#") {
			err = Invalidf("payload."+name, "%q must not start with '#'", s)
		}
		return s, err
	}
	switch topic {
	case TopicIdentityFormed:
		if ev.Identity, err = uuid("identity_uuid", p.IdentityUUID); err != nil {
			return nil, err
		}
		if isNull(p.ObservationUUIDs) {
			return nil, Invalidf("payload.observation_uuids", "is required")
		}
		var raw []json.RawMessage
		if err := json.Unmarshal(p.ObservationUUIDs, &raw); err != nil {
			return nil, Invalidf("payload.observation_uuids", "must be an array of attacker uuids, got %s", truncate(p.ObservationUUIDs))
		}
		if len(raw) == 0 {
			return nil, Invalidf("payload.observation_uuids", "must name at least one attacker")
		}
		if len(raw) > MaxFormedAttackers {
			return nil, Invalidf("payload.observation_uuids", "names %d attackers, more than the %d allowed", len(raw), MaxFormedAttackers)
		}
		for i, r := range raw {
			a, err := uuid(fmt.Sprintf("observation_uuids[%d]", i), r)
			if err != nil {
				return nil, err
			}
			ev.Attackers = append(ev.Attackers, a)
		}
		slices.Sort(ev.Attackers)
		ev.Attackers = slices.Compact(ev.Attackers)
	case TopicIdentityLinked:
		if ev.Identity, err = uuid("identity_uuid", p.IdentityUUID); err != nil {
			return nil, err
		}
		a, err := uuid("observation_uuid", p.ObservationUUID)
		if err != nil {
			return nil, err
		}
		ev.Attackers = []string{a}
	case TopicIdentityMerged:
		if ev.Winner, err = uuid("winner_uuid", p.WinnerUUID); err != nil {
			return nil, err
		}
		if ev.Loser, err = uuid("loser_uuid", p.LoserUUID); err != nil {
			return nil, err
		}
		if ev.Winner == ev.Loser {
			return nil, Invalidf("payload.loser_uuid", "%q is also the winner: an identity cannot merge into itself", ev.Loser)
		}
	case TopicIdentityUnmerged:
		if ev.Loser, err = uuid("resurrected_uuid", p.ResurrectedUUID); err != nil {
			return nil, err
		}
		if ev.Winner, err = uuid("former_winner_uuid", p.FormerWinnerUUID); err != nil {
			return nil, err
		}
		if ev.Winner == ev.Loser {
			return nil, Invalidf("payload.former_winner_uuid", "%q is also the resurrected identity", ev.Winner)
		}
	}
	return ev, nil
}
