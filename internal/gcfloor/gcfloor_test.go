package gcfloor

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, floor uint64
		want        int
	}{
		{20 * mib, 64 * mib, 320},  // small live heap: goal 20 + 64 MiB
		{64 * mib, 64 * mib, 100},  // at the floor: Go's default
		{500 * mib, 64 * mib, 100}, // above it: never below the base
		{0, 64 * mib, 10_000},      // nothing live yet: capped
		{1, 64 * mib, 10_000},
	} {
		if got := Percent(c.live, c.floor); got != c.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", c.live, c.floor, got, c.want)
		}
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// After collections with a live heap far below the floor, GOGC is raised
// to put the goal a floor above it; with a live heap above the floor it
// is back at 100; stop restores 100.
func TestStartFollowsTheLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	stop := Start(256 << 20)
	defer stop()
	poll := func(what string, cond func(uint64) bool) {
		t.Helper()
		check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
			if p := gogc(); !cond(p) {
				runtime.GC()
				return fmt.Errorf("%s: GOGC is %d", what, p)
			}
			return nil
		})
	}
	poll("small live heap", func(p uint64) bool { return p > 500 })

	big := make([][]byte, 0, 400)
	for range 400 {
		big = append(big, make([]byte, 1<<20)) // 400 MiB live, above the floor
	}
	poll("live heap above the floor", func(p uint64) bool { return p == 100 })
	runtime.KeepAlive(big)
	big = nil

	poll("small again", func(p uint64) bool { return p > 500 })
	stop()
	if p := gogc(); p != 100 {
		t.Fatalf("after stop GOGC is %d, want 100", p)
	}
	runtime.GC()
	runtime.GC()
	if p := gogc(); p != 100 {
		t.Fatalf("a collection after stop set GOGC to %d", p)
	}
}
