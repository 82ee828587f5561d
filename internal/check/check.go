// Package check polls for a condition in tests, as nats-server's tests do
// with checkFor: a test waits for what it needs, never a fixed time, and
// when the wait fails it says what it saw last.
package check

import (
	"testing"
	"time"
)

// For calls f every interval until it returns nil, and fails the test
// with f's last error once timeout has passed. f is called at least once,
// and once more at the deadline, so a condition that holds by then passes.
// f may also fail the test itself (t.Fatal) when waiting is pointless.
func For(t testing.TB, timeout, interval time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if !time.Now().Before(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
			return
		}
		time.Sleep(min(interval, time.Until(deadline)+time.Millisecond))
	}
}
