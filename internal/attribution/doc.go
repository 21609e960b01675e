// Package attribution is the domain of the attribution engine: observations,
// the per-(identity, primitive) mergers, the incremental series record that
// makes one update O(1), the transition rules, and the events they produce.
//
// It imports nothing from AWS. Storage and publishing are ports (interfaces)
// implemented by sibling packages: an in-memory store for replay and tests,
// DynamoDB and EventBridge adapters for the Lambda.
package attribution
