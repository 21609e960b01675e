// Package schema validates observation messages and event details against
// the JSON Schemas in the repository's schemas directory (embedded by
// package schemas), with content assertions on, so that an SNS
// notification's Message string is validated as the envelope it carries.
//
// The schemas document the wire contracts for producers and consumers;
// attribution.DecodeMessage remains the authority on what the engine
// accepts. The package's tests keep the two in step: every valid fixture
// and every event a replay emits must pass, and invalid fixtures must fail
// wherever JSON Schema can express the rule they break.
package schema
