// Package ddbstore keeps identities, observations and series records in
// DynamoDB, implementing attribution.Store and attribution.Identities with
// conditional writes.
//
// Tables (see template.yaml):
//   - identities:   attacker_uuid → identity_uuid, created once with
//     attribute_not_exists, so concurrent first sightings agree.
//   - observations: one item per (identity|primitive, evidence_ref): the
//     natural key is unique per series. A new observation is put with
//     attribute_not_exists; an amendment with the stored fingerprint as
//     condition. The events the observation caused ride on its item
//     (deflated JSON), so a redelivery can publish them again.
//   - states:       one item per (identity, primitive) holding the series
//     record (deflated JSON) and its version, plus one "#identity" item per
//     identity for the cross-primitive rule.
//
// Commit writes the observations and the records they change in one
// TransactWriteItems: a crash can never leave an observation stored but
// not counted, or counted twice. The cancellation reasons tell a stored
// observation (a redelivery or an amendment) from a version conflict.
//
// The operators' whole-table reads are here too, so that no other package
// knows the tables' layout: a segmented scan of the observations table
// with an opaque cursor to resume from, and the list of an identity's
// primitives (scan.go, read.go).
package ddbstore
