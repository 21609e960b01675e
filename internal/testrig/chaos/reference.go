package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/memstore"
)

// Reference is what the in-memory engine makes of a sequence of messages
// applied one at a time: the events it emits and the final records.
type Reference struct {
	Events   []attribution.Event // in emission order
	Records  map[attribution.SeriesKey]*attribution.SeriesRecord
	Rejected int
}

// Replay runs bodies, in order, through the processor over the in-memory
// store, one message at a time.
func Replay(ctx context.Context, bodies []string, reg attribution.Registry, t attribution.Thresholds) (*Reference, error) {
	store := memstore.New()
	pub := &capture{}
	proc := &attribution.Processor{
		Store: store, Identities: store, Publisher: pub,
		Registry: reg, Thresholds: t,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Concurrency: 1,
	}
	ref := &Reference{Records: map[attribution.SeriesKey]*attribution.SeriesRecord{}}
	for i, b := range bodies {
		err := proc.Process(ctx, []attribution.Message{{ID: fmt.Sprint("m", i), Body: []byte(b)}})[0]
		if err != nil {
			if attribution.ErrorCode(err) != attribution.EINVALID {
				return nil, fmt.Errorf("replay message %d: %w", i, err)
			}
			ref.Rejected++
		}
	}
	ref.Events = pub.events
	for _, r := range store.Records() {
		ref.Records[r.Key] = r
	}
	return ref, nil
}

// capture is a Publisher keeping what it is given.
type capture struct{ events []attribution.Event }

func (c *capture) Publish(_ context.Context, events []attribution.Event) error {
	c.events = append(c.events, events...)
	return nil
}

// appliedBodies turns recorded commits back into message bodies, in order.
func appliedBodies(obs []attribution.Observation) ([]string, error) {
	out := make([]string, len(obs))
	for i, o := range obs {
		b, err := json.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("encode applied observation %s: %w", o.EvidenceRef, err)
		}
		out[i] = string(b)
	}
	return out, nil
}
