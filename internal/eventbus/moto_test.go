package eventbus_test

import (
	"testing"

	"decnet-attribution/internal/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }
