package eventbus_test

import (
	"testing"

	"decnet-attribution/internal/testrig/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }
