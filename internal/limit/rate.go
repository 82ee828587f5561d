package limit

import (
	"hash/maphash"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate is a token bucket per key, each refilling at the same average rate
// up to the same burst. A key's bucket starts full.
type Rate struct {
	rate   rate.Limit
	burst  int
	seed   maphash.Seed
	shards [shards]rateShard
}

type rateShard struct {
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// NewRate returns buckets that refill at perSec tokens a second, up to burst.
func NewRate(perSec float64, burst int) *Rate {
	l := &Rate{rate: rate.Limit(perSec), burst: burst, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = map[string]*rate.Limiter{}
	}
	return l
}

// Allow takes a token from key's bucket, if it has one.
func (l *Rate) Allow(key string, now time.Time) bool {
	s := &l.shards[maphash.String(l.seed, key)%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[key]
	if b == nil {
		b = rate.NewLimiter(l.rate, l.burst)
		s.buckets[key] = b
	}
	return b.AllowN(now, 1)
}

// Refill is how long an empty bucket takes to hold one token again: what
// a refused client should wait (Retry-After).
func (l *Rate) Refill() time.Duration {
	if l.rate <= 0 {
		return time.Hour
	}
	return time.Duration(float64(time.Second) / float64(l.rate))
}

// Sweep drops the buckets that have refilled and returns how many. A new
// bucket starts full, so dropping a full one changes nothing but memory.
func (l *Rate) Sweep(now time.Time) int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for k, b := range s.buckets {
			if b.TokensAt(now) >= float64(l.burst) {
				delete(s.buckets, k)
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

// Len returns how many buckets are kept.
func (l *Rate) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}
