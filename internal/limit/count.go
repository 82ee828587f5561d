package limit

import (
	"hash/maphash"
	"sync"
)

// Count caps how many things (connections) each key holds at once. A key
// that holds nothing is forgotten. The zero Max, or a nil *Count, admits
// everything.
type Count[K comparable] struct {
	max    int
	seed   maphash.Seed
	shards [shards]countShard[K]
}

type countShard[K comparable] struct {
	mu   sync.Mutex
	held map[K]int
}

// NewCount returns a cap of max per key; max 0 or less admits everything
// (and keeps nothing).
func NewCount[K comparable](max int) *Count[K] {
	c := &Count[K]{max: max, seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].held = map[K]int{}
	}
	return c
}

// Max returns the cap per key (0: none).
func (c *Count[K]) Max() int {
	if c == nil || c.max <= 0 {
		return 0
	}
	return c.max
}

func (c *Count[K]) shard(k K) *countShard[K] {
	return &c.shards[maphash.Comparable(c.seed, k)%shards]
}

// Acquire takes one for key and reports true, or reports false, taking
// nothing, when key holds the cap already. Every true must be matched by
// one Release.
func (c *Count[K]) Acquire(k K) bool {
	if c.Max() == 0 {
		return true
	}
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[k] >= c.max {
		return false
	}
	s.held[k]++
	return true
}

// Release gives back one that Acquire took for key.
func (c *Count[K]) Release(k K) {
	if c.Max() == 0 {
		return
	}
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch n := s.held[k]; {
	case n > 1:
		s.held[k] = n - 1
	case n == 1:
		delete(s.held, k)
	}
}

// Held returns what key holds now.
func (c *Count[K]) Held(k K) int {
	if c.Max() == 0 {
		return 0
	}
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[k]
}

// Len returns how many keys hold something.
func (c *Count[K]) Len() int {
	if c.Max() == 0 {
		return 0
	}
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.held)
		s.mu.Unlock()
	}
	return n
}
