// Package gcfloor keeps a process's heap goal at least a fixed number of
// bytes above its live heap, so that a small live heap with a steady
// allocation rate is not collected several times a second.
//
// Go's default (GOGC=100) sets the goal at twice the live heap. Ingest's
// live heap is small (about 20 MiB at 2,000 messages/s, with NATS embedded)
// and every message allocates, so it collected every 2.7 s; a collection
// in progress delays the goroutines a message passes through, and most of
// ingest's waits for a CPU longer than 1 ms fell in one (docs/BENCHMARKS.md,
// issue 17). With a floor, GOGC is raised while the live heap is small and
// is back at 100 once the live heap exceeds the floor: the extra memory is
// at most the floor.
package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// Percent is the GOGC that puts the heap goal at least floor bytes above
// a live heap of live bytes, and never below Go's default, 100.
func Percent(live, floor uint64) int {
	if live == 0 {
		live = 1
	}
	p := floor * 100 / live
	if p > 10_000 {
		// A tiny live heap (at start): the floor, not a 10,000x goal.
		p = 10_000
	}
	return max(int(p), 100)
}

// Start sets GOGC after every collection from the live heap it left, as
// Percent does, until the returned stop is called (which
// puts GOGC back to 100). The caller decides whether to: an operator's
// own GOGC should win, so call it only when GOGC is unset.
func Start(floor uint64) (stop func()) {
	t := &tuner{floor: floor, last: -1}
	t.adjust()
	t.arm()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.stopped = true
		debug.SetGCPercent(100)
	}
}

type tuner struct {
	floor   uint64
	mu      sync.Mutex // held by adjust and stop: no GOGC set after stop
	stopped bool
	last    int
	sample  [1]metrics.Sample
}

// sentinel is what the collector finds unreachable once per cycle: its
// finalizer is the hook that runs after each collection. Larger than the
// tiny allocator's 16 bytes, so that it is an object of its own and is
// finalized in the first collection after it is dropped.
type sentinel struct{ _ [32]byte }

func (t *tuner) arm() {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
		if t.adjust() {
			t.arm()
		}
	})
}

// adjust sets GOGC from the live heap; false once stopped.
func (t *tuner) adjust() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	t.sample[0].Name = "/gc/heap/live:bytes"
	metrics.Read(t.sample[:])
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return true
	}
	p := Percent(t.sample[0].Value.Uint64(), t.floor)
	// Only a change of more than a tenth: SetGCPercent recomputes the
	// pacer, not worth doing for every small move of the live heap.
	if t.last < 0 || p*10 > t.last*11 || p*10 < t.last*9 || (p == 100) != (t.last == 100) {
		debug.SetGCPercent(p)
		t.last = p
	}
	return true
}
