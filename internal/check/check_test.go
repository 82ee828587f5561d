package check

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// recorder is a testing.TB that records a failure instead of stopping the
// test, so For's failing path can be checked.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.failed = fmt.Sprintf(format, args...)
	r.mu.Unlock()
}

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	For(t, 5*time.Second, time.Millisecond, func() error {
		if n++; n < 3 {
			return fmt.Errorf("try %d", n)
		}
		return nil
	})
	if n != 3 {
		t.Fatalf("f called %d times, want 3", n)
	}
}

// The failure names the last error, not the first: it is what the test
// saw when it gave up.
func TestForReportsTheLastError(t *testing.T) {
	r := &recorder{TB: t}
	n := 0
	start := time.Now()
	For(r, 50*time.Millisecond, 5*time.Millisecond, func() error {
		n++
		return fmt.Errorf("seen %d", n)
	})
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Fatalf("gave up after %s, before the timeout", took)
	}
	if want := fmt.Sprintf("after 50ms: seen %d", n); r.failed != want {
		t.Fatalf("failure %q, want %q", r.failed, want)
	}
	if n < 2 {
		t.Fatalf("f called %d times, want it polled", n)
	}
}

// A condition that first holds at the deadline still passes: f is called
// once more then.
func TestForTriesAtTheDeadline(t *testing.T) {
	r := &recorder{TB: t}
	start := time.Now()
	For(r, 30*time.Millisecond, time.Hour, func() error {
		if time.Since(start) < 30*time.Millisecond {
			return errors.New("not yet")
		}
		return nil
	})
	if r.failed != "" {
		t.Fatalf("failed: %s", r.failed)
	}
}
