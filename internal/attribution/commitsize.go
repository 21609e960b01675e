package attribution

import "encoding/json"

// Reserves for what planning one more observation may add before it is
// known: the events it may cause (a state change and a suspicion, each a
// few KB at most) and the identity record, if the commit does not carry it
// yet.
const (
	newEventsReserve = 16 << 10
	identityReserve  = 64 << 10
)

// commitBudget keeps Commit.Bytes of a commit being planned, recounting
// only what each planned observation changed.
type commitBudget struct {
	bytes    int
	records  map[SeriesKey]int // bytes counted for each record in the commit
	identity int               // bytes counted for the identity record
}

// fits reports whether one more observation of rec can join the commit
// without the commit passing MaxCommitBytes. An empty commit takes any.
func (b *commitBudget) fits(obs Observation, carried []Event, rec *SeriesRecord) bool {
	if len(b.records) == 0 {
		return true
	}
	need := jsonBytes(obs) + jsonBytes(carried) + newEventsReserve + commitItemOverhead
	need += recordGrowth(obs)
	if _, in := b.records[rec.Key]; !in {
		need += jsonBytes(rec) + commitItemOverhead
	}
	if b.identity == 0 {
		need += identityReserve
	}
	return b.bytes+need <= MaxCommitBytes
}

// add counts a planned observation's write, its record as it now is, and
// the identity record when the commit carries it.
func (b *commitBudget) add(w ObservationWrite, rec *SeriesRecord, ident *IdentityRecord) {
	if b.records == nil {
		b.records = make(map[SeriesKey]int)
	}
	b.bytes += jsonBytes(w.Observation) + jsonBytes(w.Events) + commitItemOverhead
	if _, in := b.records[rec.Key]; in {
		// Encoding a large record again for every point would cost
		// O(points × record); its growth is bounded instead.
		b.records[rec.Key] += recordGrowth(w.Observation)
		b.bytes += recordGrowth(w.Observation)
	} else {
		size := jsonBytes(rec) + commitItemOverhead
		b.records[rec.Key] = size
		b.bytes += size
	}
	if ident != nil {
		size := jsonBytes(ident) + commitItemOverhead
		b.bytes += size - b.identity
		b.identity = size
	}
}

// recordGrowth bounds what one more observation adds to its record's
// JSON: its point, and a current value (any value of the series) with
// counters in the state.
func recordGrowth(obs Observation) int {
	return jsonBytes(obs.Point()) + MaxValueBytes + 256
}

// jsonBytes is the length of v's JSON.
func jsonBytes(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return MaxCommitBytes // cannot be stored either; never let it join
	}
	return len(b)
}
