package wiring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"decnet-attribution/internal/attribution"
)

// TestIdentityEventsEndToEnd sends observations of six attackers mixed with
// DECNET identity events (formed, linked, a merge chain, an unmerge,
// repeats) through the real handler and DynamoDB, shuffled, with every
// fifth message delivered twice, by four cold instances at once that retry
// what failed. Then every attacker resolves to the canonical identity of
// the final membership, every canonical series is the reference merger
// over the union of its attackers' stored observations, nothing is lost or
// counted twice, and the delivered events form valid chains.
func TestIdentityEventsEndToEnd(t *testing.T) {
	e := newEnv(t)
	rng := rand.New(rand.NewPCG(21, 1))
	attackers := []string{"att-a", "att-b", "att-c", "att-d", "att-e", "att-f"}
	prims := []string{"motor.input_modality", "toolchain.c2.beacon_interval_ms", "motor.digraph_simhash"}
	ts := 9000.0
	bus := func(topic, payload string) json.RawMessage {
		ts++
		return json.RawMessage(fmt.Sprintf(`{"v":1,"id":"ev-%d","topic":%q,"type":"x","ts":%v,"payload":%s}`, int(ts), topic, ts, payload))
	}
	// In publishing order; the final membership: I1 ← I3 (a, b, e, f),
	// I2 (c) resurrected, d provisional.
	identity := []json.RawMessage{
		bus("identity.formed", `{"identity_uuid":"I3","observation_uuids":["att-a","att-b"]}`),
		bus("identity.formed", `{"identity_uuid":"I2","observation_uuids":["att-c"]}`),
		bus("identity.formed", `{"identity_uuid":"I1","observation_uuids":["att-e"]}`),
		bus("identity.merged", `{"winner_uuid":"I2","loser_uuid":"I3"}`),
		bus("identity.merged", `{"winner_uuid":"I1","loser_uuid":"I2"}`),
		bus("identity.observation.linked", `{"identity_uuid":"I1","observation_uuid":"att-f"}`),
		bus("identity.unmerged", `{"resurrected_uuid":"I2","former_winner_uuid":"I1"}`),
		bus("identity.merged", `{"winner_uuid":"I1","loser_uuid":"I3"}`),
	}
	for i := range identity {
		var m map[string]any
		_ = json.Unmarshal(identity[i], &m)
		m["type"] = map[string]string{
			"identity.formed": "formed", "identity.observation.linked": "observation.linked",
			"identity.merged": "merged", "identity.unmerged": "unmerged",
		}[m["topic"].(string)]
		identity[i], _ = json.Marshal(m)
	}
	canonical := map[string]string{"att-a": "I1", "att-b": "I1", "att-e": "I1", "att-f": "I1", "att-c": "I2", "att-d": attribution.StubIdentityID("att-d")}
	msgs := slices.Clone(identity)
	for i := range 160 {
		a, p := attackers[rng.IntN(len(attackers))], prims[rng.IntN(len(prims))]
		var v string
		switch p {
		case "toolchain.c2.beacon_interval_ms":
			v = fmt.Sprint(100 + rng.IntN(40))
		case "motor.digraph_simhash":
			v = fmt.Sprintf(`"h%d"`, rng.IntN(3))
		default:
			v = []string{`"typed"`, `"pasted"`}[rng.IntN(3)/2]
		}
		msgs = append(msgs, json.RawMessage(fmt.Sprintf(`{"attacker_uuid":%q,"primitive":%q,"evidence_ref":"%s#%d","ts":%d,"value":%s}`, a, p, a, i, 1000+rng.IntN(5000), v)))
	}
	rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	for i := len(msgs) / 5; i > 0; i-- {
		msgs = append(msgs, msgs[rng.IntN(len(msgs))])
	}

	var mu sync.Mutex
	queue := make([]events.SQSMessage, len(msgs))
	for i, m := range msgs {
		queue[i] = events.SQSMessage{MessageId: fmt.Sprintf("m-%04d", i), Body: string(m), EventSource: "aws:sqs",
			Attributes: map[string]string{"ApproximateReceiveCount": "1"}}
	}
	var wg sync.WaitGroup
	deadline := time.Now().Add(2 * time.Minute)
	for w := range 4 {
		h := e.handler(t, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 2))
			for time.Now().Before(deadline) {
				mu.Lock()
				n := min(len(queue), 1+r.IntN(10))
				batch := slices.Clone(queue[:n])
				queue = queue[n:]
				mu.Unlock()
				if n == 0 {
					return
				}
				resp, err := h.Handle(context.Background(), events.SQSEvent{Records: batch})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, f := range resp.BatchItemFailures {
					for _, m := range batch {
						if m.MessageId == f.ItemIdentifier {
							queue = append(queue, m)
						}
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(queue) > 0 {
		t.Fatalf("%d messages still failing", len(queue))
	}

	ctx := context.Background()
	reg, th := attribution.BuiltinRegistry(), attribution.DefaultThresholds()
	members := map[string][]string{}
	for _, a := range attackers {
		id, err := e.store.Identity(ctx, a, "none")
		if err != nil {
			t.Fatal(err)
		}
		for range attribution.MaxMergeChain {
			rec, err := e.store.LoadIdentity(ctx, id, true)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Parent == "" {
				break
			}
			id = rec.Parent
		}
		if id != canonical[a] {
			t.Errorf("attacker %s resolves to %s, want %s", a, id, canonical[a])
		}
		members[canonical[a]] = append(members[canonical[a]], a)
	}
	sent := map[string]bool{}
	for _, m := range msgs {
		if d, err := attribution.Decode(m); err == nil && d.Identity == nil {
			sent[d.Observation.AttackerUUID+"|"+d.Observation.Primitive+"|"+d.Observation.EvidenceRef] = true
		}
	}
	stored := 0
	for id, as := range members {
		recs, err := e.store.LoadIdentitySeries(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range prims {
			var items []attribution.Observation
			for _, a := range as {
				obs, err := e.store.LoadObservations(ctx, attribution.SeriesKey{IdentityUUID: attribution.StubIdentityID(a), Primitive: p})
				if err != nil {
					t.Fatal(err)
				}
				items = append(items, obs...)
			}
			got := recs[p]
			if got != nil {
				items = got.Observations(items) // with those it holds inline
			}
			stored += len(items)
			var points []attribution.Point
			for _, o := range items {
				points = append(points, o.Point())
			}
			if len(points) == 0 {
				continue
			}
			attribution.SortPoints(points)
			want := attribution.Merge(reg.Kind(p), points, th)
			if got == nil || got.Current == nil || got.Current.State != want.State || got.Current.ObservationCount != want.ObservationCount ||
				got.Current.LastObservationTS != want.LastObservationTS {
				t.Errorf("%s|%s (%v): state %+v, want %+v", id, p, as, got, want)
			}
		}
	}
	if stored != len(sent) {
		t.Errorf("%d observations stored, %d distinct sent", stored, len(sent))
	}

	// Delivered events: one detail per event_id, consecutive sequences per
	// series, each old_state the state before it.
	type link struct {
		seq      float64
		old, new any
	}
	chains := map[string][]link{}
	seen := map[string]string{}
	rekeyed := 0
	for _, ev := range e.tap.Drain(t, 3*time.Second) {
		var d map[string]any
		if err := json.Unmarshal(ev.Detail, &d); err != nil {
			t.Fatal(err)
		}
		id := d["event_id"].(string)
		if prev, dup := seen[id]; dup {
			if prev != string(ev.Detail) {
				t.Errorf("event %s delivered with two details", id)
			}
			continue
		}
		seen[id] = string(ev.Detail)
		switch ev.DetailType {
		case attribution.EventIdentityRekeyed:
			rekeyed++
		case attribution.EventStateChanged:
			k := fmt.Sprint(d["identity_uuid"], "|", d["primitive"])
			chains[k] = append(chains[k], link{d["sequence"].(float64), d["old_state"], d["new_state"]})
		}
	}
	for k, ls := range chains {
		slices.SortFunc(ls, func(a, b link) int { return int(a.seq - b.seq) })
		for i, l := range ls {
			var prior any
			if i > 0 {
				prior = ls[i-1].new
			}
			if l.seq != float64(i+1) || l.old != prior {
				t.Errorf("%s: event %v (old_state %v) follows %v: not a chain", k, l.seq, l.old, prior)
				break
			}
		}
	}
	if rekeyed == 0 || len(chains) == 0 {
		t.Errorf("%d rekeyed events and %d series with transitions delivered", rekeyed, len(chains))
	}
}
