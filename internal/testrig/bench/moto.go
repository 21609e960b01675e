package bench

import "decnet-attribution/internal/testrig/devstack"

// FastMotoOptions tune StartFastMoto.
type FastMotoOptions struct {
	// Verify serves every read through moto's own serializer too and fails
	// the request when the two encodings differ (for tests).
	Verify bool
	// LogPath receives the server's output; empty keeps it in memory.
	LogPath string
}

// StartFastMoto starts moto with the project's launcher (see
// internal/testrig/devstack/moto_server.py: its partition-local queries, item
// journal for transactions and fast read encoding keep deep histories
// within minutes) on a free loopback port. The caller stops it.
func StartFastMoto(opts FastMotoOptions) (*devstack.Moto, error) {
	return devstack.StartMoto(devstack.MotoOptions{VerifyEncoding: opts.Verify, LogPath: opts.LogPath})
}
