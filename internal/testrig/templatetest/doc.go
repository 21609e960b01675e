// Package templatetest checks the deployment artefacts that are not Go code:
// the SAM template (template.yaml) and the raw SQS events in events/ used
// with `sam local invoke -e`.
//
// Its tests run cfn-lint over the template and fail, rather than skip, when
// cfn-lint is not installed; they check the template against the resource,
// table and environment contract the function relies on; and they decode
// every event fixture the way Lambda delivers it, so that fixtures meant to
// be accepted stay valid and fixtures meant to be rejected (named
// "invalid-*" or "malformed-*", plus the batch with a malformed message)
// stay invalid.
package templatetest
