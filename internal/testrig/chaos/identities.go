package chaos

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"decnet-attribution/internal/attribution"
)

// IdentityConfig describes the identity events of DECNET's clusterer mixed
// into a stream.
type IdentityConfig struct {
	// Events is the number of identity events the clusterer publishes
	// (formed, linked, merged, unmerged, and repeats of earlier ones).
	Events int
}

// clusterer is DECNET's identity clusterer as the harness plays it: it
// publishes identity events in stamp order and keeps the membership they
// leave, which is the truth the run's final states are checked against.
type clusterer struct {
	r       *rand.Rand
	seed    uint64
	literal map[string]string // attacker → DECNET identity
	parent  map[string]string // identity → the identity it is merged into
	ids     []string          // identities formed, in order
	events  []Message
	ts      float64
	// longest is the most merges ever between an identity and its
	// canonical one.
	longest int
}

func newClusterer(seed uint64, r *rand.Rand) *clusterer {
	return &clusterer{r: r, seed: seed, literal: map[string]string{}, parent: map[string]string{}, ts: 1714100000}
}

func (c *clusterer) root(id string) string {
	for hops := 0; c.parent[id] != "" && hops <= attribution.MaxMergeChain; hops++ {
		id = c.parent[id]
	}
	return id
}

// canonical is the identity an attacker's observations belong to in the
// end.
func (c *clusterer) canonical(attacker string) string {
	if id, ok := c.literal[attacker]; ok {
		return c.root(id)
	}
	return attribution.StubIdentityID(attacker)
}

// chainMerge picks a canonical identity that already won a merge and a
// smaller canonical one to merge it into.
func (c *clusterer) chainMerge(roots []string) (winner, loser string, ok bool) {
	for _, l := range roots {
		won := false
		for _, p := range c.parent {
			won = won || p == l
		}
		if !won {
			continue
		}
		for _, w := range roots {
			if w < l {
				return w, l, true
			}
		}
	}
	return "", "", false
}

// depth counts the merges from id to its canonical identity.
func (c *clusterer) depth(id string) int {
	n := 0
	for ; c.parent[id] != "" && n <= attribution.MaxMergeChain; id = c.parent[id] {
		n++
	}
	return n
}

func (c *clusterer) roots() []string {
	var out []string
	for _, id := range c.ids {
		if c.parent[id] == "" {
			out = append(out, id)
		}
	}
	return out
}

func (c *clusterer) publish(topic string, payload map[string]any) {
	c.ts += 1 + float64(c.r.IntN(1000))/1000
	id := fmt.Sprintf("idev-%d-%04d", c.seed, len(c.events))
	body := mustJSON(map[string]any{
		"v": 1, "id": id, "topic": topic, "type": strings.TrimPrefix(topic, attribution.IdentityTopicPrefix),
		"ts": c.ts, "payload": payload,
	})
	c.events = append(c.events, Message{Body: body, Kind: KindIdentity, Topic: topic, EventID: id})
}

// pick draws an attacker, the hot ones half the time: identity changes then
// land on the series the pollers contend for.
func (c *clusterer) pick(attackers []string, hot int) string {
	if hot > 0 && c.r.IntN(2) == 0 {
		return attackers[c.r.IntN(hot)]
	}
	return attackers[c.r.IntN(len(attackers))]
}

// step publishes one event as DECNET's clusterer would: identities formed
// and attackers linked (also away from another identity), merges of two
// canonical identities into the smaller uuid (so chains form, and no merge
// can close a cycle), unmerges naming the canonical winner of the time, and
// repeats of earlier events.
func (c *clusterer) step(attackers []string, hot int) {
	roots := c.roots()
	var merged []string
	for _, id := range c.ids {
		if c.parent[id] != "" {
			merged = append(merged, id)
		}
	}
	switch n := c.r.IntN(20); {
	case n < 6 || len(roots) < 2:
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", c.r.Uint32(), c.r.Uint64()&0xffffffffffff)
		members := []string{c.pick(attackers, hot)}
		for c.r.IntN(3) == 0 && len(members) < 3 {
			members = append(members, c.pick(attackers, hot))
		}
		c.ids = append(c.ids, id)
		for _, a := range members {
			c.literal[a] = id
		}
		c.publish(attribution.TopicIdentityFormed, map[string]any{"identity_uuid": id, "observation_uuids": members})
	case n < 9:
		id, a := roots[c.r.IntN(len(roots))], c.pick(attackers, hot)
		c.literal[a] = id
		c.publish(attribution.TopicIdentityLinked, map[string]any{"identity_uuid": id, "observation_uuid": a})
	case n < 15:
		i, j := c.r.IntN(len(roots)), c.r.IntN(len(roots)-1)
		if j >= i {
			j++
		}
		winner, loser := min(roots[i], roots[j]), max(roots[i], roots[j])
		if w, l, ok := c.chainMerge(roots); ok && c.r.IntN(2) == 0 {
			winner, loser = w, l // a winner merged in turn: a chain
		}
		c.parent[loser] = winner
		for _, id := range c.ids {
			c.longest = max(c.longest, c.depth(id))
		}
		c.publish(attribution.TopicIdentityMerged, map[string]any{"winner_uuid": winner, "loser_uuid": loser})
	case n < 18 && len(merged) > 0:
		l := merged[c.r.IntN(len(merged))]
		winner := c.root(l)
		delete(c.parent, l)
		c.publish(attribution.TopicIdentityUnmerged, map[string]any{"resurrected_uuid": l, "former_winner_uuid": winner})
	case len(c.events) > 0:
		m := c.events[c.r.IntN(len(c.events))]
		m.Kind = KindDuplicate // a repeat: the same envelope, id and ts
		c.events = append(c.events, m)
	}
}

// interleave puts the clusterer's events among the observations, in their
// publishing order, spread over the stream.
func interleave(obs, events []Message, r *rand.Rand) []Message {
	out := make([]Message, 0, len(obs)+len(events))
	next := 0
	for i, e := range events {
		at := (i + 1) * len(obs) / (len(events) + 1)
		at = min(len(obs), max(next, at+r.IntN(5)-2))
		out = append(out, obs[next:at]...)
		out = append(out, e)
		next = at
	}
	return append(out, obs[next:]...)
}

// Membership is the clusterer's final membership: each canonical identity
// with its attackers, sorted, for every attacker of the stream.
func (s *Stream) Membership() map[string][]string {
	out := map[string][]string{}
	seen := map[string]bool{}
	for _, m := range s.Messages {
		if m.Kind == KindMalformed || m.Key.Attacker == "" || seen[m.Key.Attacker] {
			continue
		}
		seen[m.Key.Attacker] = true
		c := attribution.StubIdentityID(m.Key.Attacker)
		if s.clusterer != nil {
			c = s.clusterer.canonical(m.Key.Attacker)
		}
		out[c] = append(out[c], m.Key.Attacker)
	}
	if s.clusterer != nil {
		for a := range s.clusterer.literal {
			if !seen[a] {
				seen[a] = true
				c := s.clusterer.canonical(a)
				out[c] = append(out[c], a)
			}
		}
	}
	for _, as := range out {
		slices.Sort(as)
	}
	return out
}

// identityIDs returns every identity the stream's events name, sorted.
func (s *Stream) identityIDs() []string {
	if s.clusterer == nil {
		return nil
	}
	return slices.Sorted(slices.Values(s.clusterer.ids))
}

// identityEvent is a sent identity event, decoded.
type identityEvent struct {
	msg Message
	ev  *attribution.IdentityEvent
	raw map[string]any
}

// identityEvents indexes the stream's identity events by envelope id.
func (s *Stream) identityEvents() (map[string]*identityEvent, error) {
	out := map[string]*identityEvent{}
	for _, m := range s.Messages {
		if m.EventID == "" || out[m.EventID] != nil {
			continue
		}
		d, err := attribution.Decode([]byte(m.Body))
		if err != nil || d.Identity == nil {
			return nil, fmt.Errorf("identity event %s does not decode as one: %v", m.EventID, err)
		}
		ie := &identityEvent{msg: m, ev: d.Identity}
		if err := json.Unmarshal([]byte(m.Body), &ie.raw); err != nil {
			return nil, err
		}
		out[m.EventID] = ie
	}
	return out, nil
}

// forAttacker is the body of a formed event narrowed to one of its
// attackers: the function applies formed one attacker at a time, each its
// own commit, and the replay of the applied order must do the same.
func (ie *identityEvent) forAttacker(attacker string) string {
	if ie.ev.Topic != attribution.TopicIdentityFormed {
		return ie.msg.Body
	}
	env := map[string]any{}
	for k, v := range ie.raw {
		env[k] = v
	}
	env["payload"] = map[string]any{"identity_uuid": ie.ev.Identity, "observation_uuids": []string{attacker}}
	return mustJSON(env)
}
