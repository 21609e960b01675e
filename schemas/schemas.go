// Package schemas holds the JSON Schemas of the engine's public contracts,
// embedded so that Go code validates against the very files published
// beside it:
//
//   - observation-message.schema.json: the body of an observation queue
//     message (bare envelope, EventBridge event, SNS notification, DECNET
//     bus envelope, or identity event);
//   - identity-event.schema.json: an identity event of DECNET's clusterer,
//     as the observation queue receives it;
//   - state-changed.schema.json: the detail of
//     attribution.profile.state_changed;
//   - multi-actor-suspected.schema.json: the detail of
//     attribution.profile.multi_actor_suspected;
//   - identity-rekeyed.schema.json: the detail of
//     attribution.identity.rekeyed.
//
// All are JSON Schema draft 2020-12. internal/schema compiles them.
package schemas

import "embed"

// File names of the schemas in FS.
const (
	ObservationMessage  = "observation-message.schema.json"
	IdentityEvent       = "identity-event.schema.json"
	StateChanged        = "state-changed.schema.json"
	MultiActorSuspected = "multi-actor-suspected.schema.json"
	IdentityRekeyed     = "identity-rekeyed.schema.json"
)

// FS holds the schema files.
//
//go:embed *.schema.json
var FS embed.FS
