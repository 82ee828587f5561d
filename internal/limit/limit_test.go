package limit

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestRate(t *testing.T) {
	now := time.Now()
	l := NewRate(10, 3)
	for i := range 3 {
		if !l.Allow("a", now) {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	if l.Allow("a", now) {
		t.Fatal("4th request of a burst of 3 allowed")
	}
	if !l.Allow("b", now) {
		t.Fatal("another key shares the bucket")
	}
	if !l.Allow("a", now.Add(100*time.Millisecond)) {
		t.Fatal("a token did not come back after 1/rate")
	}
	if got := l.Refill(); got != 100*time.Millisecond {
		t.Fatalf("Refill = %s, want 100ms", got)
	}
	if n := l.Sweep(now); n != 0 {
		t.Fatalf("swept %d buckets in use", n)
	}
	if n := l.Sweep(now.Add(time.Second)); n != 2 || l.Len() != 0 {
		t.Fatalf("swept %d refilled buckets, %d left; want 2, 0", n, l.Len())
	}
}

func TestCount(t *testing.T) {
	c := NewCount[string](2)
	for range 2 {
		if !c.Acquire("a") {
			t.Fatal("refused under the cap")
		}
	}
	if c.Acquire("a") {
		t.Fatal("third of a cap of 2 admitted")
	}
	if !c.Acquire("b") {
		t.Fatal("another key shares the count")
	}
	c.Release("a")
	if !c.Acquire("a") {
		t.Fatal("a released slot was not given back")
	}
	c.Release("a")
	c.Release("a")
	c.Release("b")
	c.Release("b") // one too many: must not go negative
	if c.Len() != 0 || c.Held("a") != 0 {
		t.Fatalf("%d keys kept after every release; a holds %d", c.Len(), c.Held("a"))
	}
	// Three acquires, each counted: the cap of 2 admits two.
	if first, second, third := c.Acquire("b"), c.Acquire("b"), c.Acquire("b"); !first || !second || third {
		t.Fatal("an extra release raised the cap")
	}
}

func TestCountOff(t *testing.T) {
	for _, c := range []*Count[string]{nil, NewCount[string](0)} {
		for range 10 {
			if !c.Acquire("a") {
				t.Fatal("a count without a cap refused")
			}
		}
		c.Release("a")
		if c.Len() != 0 || c.Max() != 0 {
			t.Fatal("a count without a cap keeps keys")
		}
	}
}

// Many goroutines taking and giving back on a few keys never see more than
// the cap held, and leave nothing behind.
func TestCountConcurrent(t *testing.T) {
	const max = 5
	c := NewCount[netip.Addr](max)
	keys := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::1"), netip.MustParseAddr("192.0.2.7")}
	var wg sync.WaitGroup
	var mu sync.Mutex
	held := map[netip.Addr]int{}
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := keys[(g+i)%len(keys)]
				if !c.Acquire(k) {
					continue
				}
				mu.Lock()
				held[k]++
				over := held[k] > max
				mu.Unlock()
				if over {
					t.Errorf("%s holds more than %d", k, max)
				}
				mu.Lock()
				held[k]--
				mu.Unlock()
				c.Release(k)
			}
		}()
	}
	wg.Wait()
	if c.Len() != 0 {
		t.Fatalf("%d keys kept after every release", c.Len())
	}
}
