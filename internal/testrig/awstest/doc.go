// Package awstest is the harness for tests that need AWS APIs or the Lambda
// runtime.
//
// One moto server per test binary ([Moto]) serves the AWS APIs; tests get
// their own copy of the stack, provisioned from the repository's
// template.yaml under a unique stack name ([NewStack]), so they can run in
// parallel on the shared server without seeing each other's data. Lambda
// tests build a function's bootstrap for the host ([BuildBootstrap]) and run
// it under the pinned Runtime Interface Emulator ([Emulator]) with the
// environment the template gives the function.
//
// Nothing here skips: if python3, moto or the emulator is missing, the test
// fails and says what to install (`make test` installs the emulator).
//
//	func TestMain(m *testing.M) { awstest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		srv := awstest.Moto(t)
//		stack := awstest.NewStack(t, srv)
//		db := dynamodb.NewFromConfig(srv.Config())
//		_ = stack.TableName(devstack.StatesTableID)
//	}
package awstest
