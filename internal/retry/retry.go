// Package retry calls an operation again, with growing pauses, until it
// succeeds or its context ends: how RIG-Go waits out NATS and JetStream
// being away or slow to answer.
package retry

import (
	"context"
	"time"
)

// Backoff is a pause that doubles from First to Max on each Wait, and
// starts from First again after Reset. Its zero value pauses 100 ms to 2 s.
type Backoff struct {
	First, Max time.Duration
	next       time.Duration
}

// Wait pauses for the next backoff or until ctx ends; it returns ctx's
// error then, else nil.
func (b *Backoff) Wait(ctx context.Context) error {
	if b.First <= 0 {
		b.First = 100 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 2 * time.Second
	}
	if b.next == 0 {
		b.next = b.First
	}
	t := time.NewTimer(b.next)
	defer t.Stop()
	b.next = min(2*b.next, b.Max)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Reset makes the next Wait pause First again: the operation succeeded
// once, so its next failure is a new trouble.
func (b *Backoff) Reset() { b.next = 0 }

// Do calls attempt until it succeeds, pausing 100 ms to 2 s between
// attempts, and calls failed with each error; it returns nil, or ctx's
// error once ctx ends. Each attempt bounds its own calls (see
// AttemptTimeout in package broker): a call that hangs must not stall the
// retrying.
func Do(ctx context.Context, attempt func(context.Context) error, failed func(error)) error {
	var b Backoff
	for {
		err := attempt(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		failed(err)
		if err := b.Wait(ctx); err != nil {
			return err
		}
	}
}
