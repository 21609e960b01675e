package memstore_test

import (
	"testing"

	"decnet-attribution/internal/memstore"
	"decnet-attribution/internal/testrig/storetest"
)

func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(*testing.T) storetest.Backend { return memstore.New() })
}
