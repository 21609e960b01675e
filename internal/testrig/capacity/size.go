package capacity

const (
	// WriteUnitBytes is the item size covered by one write capacity unit.
	WriteUnitBytes = 1024
	// ReadUnitBytes is the item size covered by one strongly consistent read
	// capacity unit.
	ReadUnitBytes = 4096
)

// WriteUnits returns the write capacity units of one write of an item of the
// given size: one unit per started 1 KB (1024 bytes), at least one.
func WriteUnits(size int) float64 {
	return float64(writeHalves(size)) / 2
}

// ReadUnits returns the read capacity units of reading the given number of
// bytes in one request: one unit per started 4 KB (4096 bytes), at least
// one, halved when the read is eventually consistent.
func ReadUnits(size int, consistent bool) float64 {
	return float64(readHalves(size, consistent)) / 2
}

// TransactWriteUnits returns the write capacity units of one action of a
// TransactWriteItems request that writes an item of the given size: twice
// WriteUnits.
func TransactWriteUnits(size int) float64 {
	return 2 * WriteUnits(size)
}

// TransactReadUnits returns the read capacity units of one item read in a
// transaction (a TransactGetItems Get, or a TransactWriteItems
// ConditionCheck): twice a strongly consistent read.
func TransactReadUnits(size int) float64 {
	return 2 * ReadUnits(size, true)
}

// The meter keeps units in halves so that eventually consistent reads add up
// exactly in integers.

func writeHalves(size int) int64 {
	return 2 * blocks(size, WriteUnitBytes)
}

func readHalves(size int, consistent bool) int64 {
	n := blocks(size, ReadUnitBytes)
	if consistent {
		return 2 * n
	}
	return n
}

// blocks returns the number of started blocks of the given size needed to
// hold size bytes, at least one.
func blocks(size, block int) int64 {
	if size <= block {
		return 1
	}
	return int64((size + block - 1) / block)
}
