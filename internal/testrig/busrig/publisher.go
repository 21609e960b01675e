package busrig

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/backoff"
	"decnet-attribution/internal/decnetbus"
	"decnet-attribution/internal/testrig/chaos"
)

// ObservationStream returns n observations (BEHAVE envelopes with
// attacker_uuid) as DECNET's profiler emits them at the end of sessions:
// many attackers, a few hot ones whose primitives alternate (two operators
// on one host), categorical, numeric and hash primitives interleaved.
// The same seed gives the same stream.
func ObservationStream(seed uint64, n, attackers int) [][]byte {
	st := chaos.Generate(chaos.StreamConfig{
		Seed: seed, Observations: n, Attackers: attackers,
		Hot: max(1, attackers/10), HotShare: 0.3,
	})
	out := make([][]byte, 0, len(st.Messages))
	for _, m := range st.Messages {
		if m.Kind == chaos.KindOriginal {
			out = append(out, []byte(m.Body))
		}
	}
	return out
}

// Publisher publishes observations on the bus as DECNET's profiler does:
// one PUB on attacker.observation.<primitive> per observation, the
// observation as the payload.
type Publisher struct {
	Client *decnetbus.Client
	// Interval, when set, paces the publishes (DECNET publishes as
	// sessions end, not in floods).
	Interval time.Duration
}

// ObservationTopic is the topic of an observation body.
func ObservationTopic(body []byte) (string, error) {
	var probe struct {
		Primitive string `json:"primitive"`
	}
	if err := json.Unmarshal(body, &probe); err != nil || probe.Primitive == "" {
		return "", fmt.Errorf("not an observation: %s", body)
	}
	return attribution.ObservationTopicPrefix + probe.Primitive, nil
}

// Publish publishes each body, waiting for the connection when the bus is
// down (a real DECNET publisher would drop them: the tests pause it
// instead).
func (p *Publisher) Publish(ctx context.Context, bodies [][]byte) error {
	for _, b := range bodies {
		topic, err := ObservationTopic(b)
		if err != nil {
			return err
		}
		for {
			// A failed write drops the connection; the client reconnects.
			if p.Client.Publish(topic, "observation", b) == nil {
				break
			}
			if err := backoff.Sleep(ctx, 20*time.Millisecond); err != nil {
				return err
			}
		}
		if p.Interval > 0 {
			if err := backoff.Sleep(ctx, p.Interval); err != nil {
				return err
			}
		}
	}
	return nil
}
