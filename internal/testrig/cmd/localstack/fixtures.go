package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// fixture is an SQS event file to invoke the function with.
type fixture struct {
	path    string
	records int
	group   int     // fixtureStream, fixtureRedelivery or fixtureRejected
	firstTS float64 // earliest observation ts in the file; +Inf if none
}

const (
	fixtureStream     = iota // ordinary traffic
	fixtureRedelivery        // replays messages sent before
	fixtureRejected          // invalid-* and malformed-*: meant to fail
)

// orderFixtures reads the event files and orders them as a stream would
// deliver them: ordinary traffic by the time of its first observation, then
// redeliveries, then the fixtures meant to be rejected (named invalid-* or
// malformed-*). Every file is kept.
func orderFixtures(paths []string) ([]fixture, error) {
	out := make([]fixture, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var event struct {
			Records []struct {
				Body string `json:"body"`
			} `json:"Records"`
		}
		if err := json.Unmarshal(b, &event); err != nil {
			return nil, fmt.Errorf("%s is not an SQS event: %w", p, err)
		}
		f := fixture{path: p, records: len(event.Records), firstTS: math.Inf(1)}
		for _, r := range event.Records {
			if ts, ok := observationTS(r.Body); ok && ts < f.firstTS {
				f.firstTS = ts
			}
		}
		name := filepath.Base(p)
		switch {
		case strings.HasPrefix(name, "invalid-") || strings.HasPrefix(name, "malformed-"):
			f.group = fixtureRejected
		case strings.Contains(name, "redelivery"):
			f.group = fixtureRedelivery
		}
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.group != b.group {
			return a.group < b.group
		}
		if a.firstTS != b.firstTS {
			return a.firstTS < b.firstTS
		}
		return a.path < b.path
	})
	return out, nil
}

// observationTS reads ts from a message body: a bare observation, one
// wrapped by EventBridge (detail) or by SNS (Message, a JSON string).
func observationTS(body string) (float64, bool) {
	var msg struct {
		TS      *float64        `json:"ts"`
		Detail  json.RawMessage `json:"detail"`
		Message *string         `json:"Message"`
	}
	if json.Unmarshal([]byte(body), &msg) != nil {
		return 0, false
	}
	switch {
	case msg.TS != nil:
		return *msg.TS, true
	case len(msg.Detail) > 0:
		return observationTS(string(msg.Detail))
	case msg.Message != nil:
		return observationTS(*msg.Message)
	}
	return 0, false
}
