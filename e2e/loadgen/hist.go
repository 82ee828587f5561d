package main

import (
	"math/bits"
	"time"
)

// Hist is a latency histogram with buckets of at most 1/512 (0.2%) of
// their value: exact up to 1,024 µs, log-linear above. It is small enough to
// send between processes as a sparse map and merge.
type Hist struct {
	Counts map[int]uint64 `json:"counts"` // bucket → count
	N      uint64         `json:"n"`
	Max    int64          `json:"max_us"`
}

// NewHist returns an empty histogram.
func NewHist() *Hist { return &Hist{Counts: map[int]uint64{}} }

const subBits = 9 // 512 sub-buckets per power of two

func bucketOf(us int64) int {
	if us < 1<<(subBits+1) {
		return int(max(us, 0))
	}
	e := bits.Len64(uint64(us)) - subBits - 1 // us >> e is in [512, 1024)
	return 1<<(subBits+1) + (e-1)<<subBits + int(us>>e) - 1<<subBits
}

// lowOf is the smallest value of bucket b, in µs.
func lowOf(b int) int64 {
	if b < 1<<(subBits+1) {
		return int64(b)
	}
	b -= 1 << (subBits + 1)
	e := b>>subBits + 1
	m := int64(b&(1<<subBits-1)) + 1<<subBits
	return m << e
}

// Add records one latency.
func (h *Hist) Add(d time.Duration) {
	us := d.Microseconds()
	h.Counts[bucketOf(us)]++
	h.N++
	h.Max = max(h.Max, us)
}

// Merge adds o's counts to h.
func (h *Hist) Merge(o *Hist) {
	for b, n := range o.Counts {
		h.Counts[b] += n
	}
	h.N += o.N
	h.Max = max(h.Max, o.Max)
}

// Quantile returns the latency below which a fraction q of the samples lie
// (the low end of that sample's bucket), in milliseconds.
func (h *Hist) Quantile(q float64) float64 {
	if h.N == 0 {
		return 0
	}
	rank := uint64(q*float64(h.N) + 0.5)
	rank = min(max(rank, 1), h.N)
	maxB := 0
	for b := range h.Counts {
		maxB = max(maxB, b)
	}
	seen := uint64(0)
	for b := 0; b <= maxB; b++ {
		seen += h.Counts[b]
		if seen >= rank {
			return float64(lowOf(b)) / 1000
		}
	}
	return float64(h.Max) / 1000
}
