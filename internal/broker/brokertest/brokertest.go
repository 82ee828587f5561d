// Package brokertest runs a broker for the length of a test, as a process's
// run does: tests of the packages built on a broker start one this way.
package brokertest

import (
	"context"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/broker"
)

// Run runs b until the test ends (then closes it and waits for that), and
// waits up to 10s for it to be ready unless wait is false.
func Run(t testing.TB, b *broker.Broker, wait bool) {
	t.Helper()
	Go(t, b.Run)
	if !wait {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

// Go runs fn on its own goroutine until the test ends: then it cancels
// fn's context and waits for fn to return. Cleanups run last registered
// first, so what a test starts later stops earlier.
func Go(t testing.TB, fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fn(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}
