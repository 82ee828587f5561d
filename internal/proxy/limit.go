package proxy

import (
	"hash/maphash"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const limiterShards = 32

// limiter is RIG's rate limit: a token bucket per upstream (API), or per
// upstream and client IP, each refilling at the average rate up to the
// burst size.
type limiter struct {
	rate   rate.Limit
	burst  int
	perIP  bool
	seed   maphash.Seed
	shards [limiterShards]limiterShard
}

type limiterShard struct {
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newLimiter(perSec, burst int, perIP bool) *limiter {
	l := &limiter{rate: rate.Limit(perSec), burst: burst, perIP: perIP, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = map[string]*rate.Limiter{}
	}
	return l
}

// allow takes a token from the request's bucket, if it has one.
func (l *limiter) allow(api, ip string, now time.Time) bool {
	key := api
	if l.perIP {
		key = api + "\x00" + ip
	}
	s := &l.shards[maphash.String(l.seed, key)%limiterShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[key]
	if b == nil {
		b = rate.NewLimiter(l.rate, l.burst)
		s.buckets[key] = b
	}
	return b.AllowN(now, 1)
}

// sweep drops the buckets that have refilled. A new bucket starts full, so
// dropping a full one changes nothing but memory.
func (l *limiter) sweep(now time.Time) int {
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

func (l *limiter) len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}
