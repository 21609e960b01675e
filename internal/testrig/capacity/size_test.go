package capacity_test

import (
	"testing"

	"decnet-attribution/internal/testrig/capacity"
)

// The cases below are the worked examples of the DynamoDB Developer Guide
// (capacity unit consumption for reads, writes and transactions).
func TestReadUnits(t *testing.T) {
	tests := []struct {
		name       string
		size       int
		consistent bool
		want       float64
	}{
		{"missing item strongly consistent costs the minimum", 0, true, 1},
		{"missing item eventually consistent costs the minimum", 0, false, 0.5},
		{"3.5 KB strongly consistent", 3584, true, 1},
		{"3.5 KB eventually consistent", 3584, false, 0.5},
		{"exactly 4 KB", 4096, true, 1},
		{"one byte over 4 KB", 4097, true, 2},
		{"8 KB strongly consistent", 8192, true, 2},
		{"8 KB eventually consistent", 8192, false, 1},
		{"10 KB rounds to 12 KB", 10240, true, 3},
		{"query page of 10 items of 400 B eventually consistent", 10 * 400, false, 0.5},
		{"query page of 10 items of 400 B strongly consistent", 10 * 400, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := capacity.ReadUnits(tt.size, tt.consistent); got != tt.want {
				t.Errorf("ReadUnits(%d, %v) = %v, want %v", tt.size, tt.consistent, got, tt.want)
			}
		})
	}
}

func TestWriteUnits(t *testing.T) {
	tests := []struct {
		name string
		size int
		want float64
	}{
		{"nothing still costs one", 0, 1},
		{"500 B", 500, 1},
		{"exactly 1 KB", 1024, 1},
		{"one byte over 1 KB", 1025, 2},
		{"1.5 KB", 1536, 2},
		{"400 KB", 400 * 1024, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := capacity.WriteUnits(tt.size); got != tt.want {
				t.Errorf("WriteUnits(%d) = %v, want %v", tt.size, got, tt.want)
			}
		})
	}
}

func TestTransactUnits(t *testing.T) {
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"transactional write of 500 B", capacity.TransactWriteUnits(500), 2},
		{"transactional write of 1.5 KB", capacity.TransactWriteUnits(1536), 4},
		{"transactional read of 8 KB", capacity.TransactReadUnits(8192), 4},
		{"transactional read of 3.5 KB", capacity.TransactReadUnits(3584), 2},
		{"transactional read of a missing item", capacity.TransactReadUnits(0), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}
