// Package devstack runs this project's AWS stack on a developer machine or a
// CI runner: moto for the AWS APIs, the template's own resources provisioned
// into it, and the Lambda Runtime Interface Emulator running the function's
// real bootstrap binary.
//
// Provisioning reads template.yaml itself ([LoadTemplate], [Provision]):
// parameters take their defaults unless overridden, intrinsic functions in
// short (!Ref, !GetAtt, !Sub, !If, ...) and long form are resolved by
// goformation's processor, with this stack's references, and the
// DynamoDB tables, SQS queues, EventBridge buses and rules are created with
// the properties the template gives them. There is no second, hand-written
// description of the stack to drift from the template.
//
// One deliberate difference: SNS e-mail cannot be observed locally, so
// Provision creates an extra "alerts" SQS queue and makes it the target of
// every rule in place of a target it cannot deliver to (the SNS topic). [Stack].AlertsQueue is where alerts
// arrive. Resource types with no local counterpart (the function itself,
// IAM, alarms, policies, log groups, SNS) are not created; [Stack].Notes
// says so, one line each.
//
// Processes ([StartMoto], [StartEmulator]) run in their own process group,
// so stopping one also stops its children (the emulator's bootstrap); they
// are either tied to the caller (killed when it dies, for tests) or
// detached (surviving the caller, for the localstack command).
package devstack
