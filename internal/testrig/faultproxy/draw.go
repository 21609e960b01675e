package faultproxy

import "hash/fnv"

// draws is a small deterministic random stream (SplitMix64) for the fault
// decisions of one request.
type draws struct {
	state uint64
}

// newDraws returns the stream of the seq-th request of op under seed. Each
// request has its own stream, so concurrent requests do not disturb each
// other's decisions.
func newDraws(seed int64, op Op, seq uint64) *draws {
	h := fnv.New64a()
	h.Write([]byte(op.String())) // hash.Hash never returns an error
	d := &draws{state: uint64(seed)}
	d.state = d.next() ^ h.Sum64()
	d.state = d.next() ^ seq
	return d
}

func (d *draws) next() uint64 {
	d.state += 0x9e3779b97f4a7c15
	z := d.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// float returns a uniform draw in [0, 1).
func (d *draws) float() float64 {
	return float64(d.next()>>11) / (1 << 53)
}
