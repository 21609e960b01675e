package attribution

import "encoding/json"

// Reserves for what planning one more observation may add before it is
// known: the events it may cause (a state change and a suspicion, each a
// few KB at most) and the identity record, if the commit carries it.
const (
	newEventsReserve = 16 << 10
	identityReserve  = 64 << 10
)

// jsonBytes is the length of v's JSON.
func jsonBytes(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return MaxCommitBytes // cannot be stored either; never let it join
	}
	return len(b)
}
