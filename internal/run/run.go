// Package run runs a process's long-lived parts together and stops them in
// the one order that matters: what serves clients first, what it needs
// while stopping (NATS) last.
package run

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// Func is a part that works until its context ends, then stops and returns.
// An error, or returning before its context ends, stops the whole.
type Func func(ctx context.Context) error

// Ordered runs the parts at once, each under its own context, until ctx
// ends or one of them returns. Then it stops them in order: it cancels the
// first part's context, waits for that part to return, then the second's,
// and so on, so a part may still use those after it while it stops (an
// edge drains its clients while the NATS connection is up). It returns the
// first error a part returned.
func Ordered(ctx context.Context, parts ...Func) error {
	var g errgroup.Group
	ended := make(chan struct{}, len(parts))
	cancels := make([]context.CancelFunc, len(parts))
	dones := make([]chan struct{}, len(parts))
	for i, part := range parts {
		// Not derived from ctx's cancellation: each part ends only when
		// its turn comes.
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		cancels[i], dones[i] = cancel, make(chan struct{})
		g.Go(func() error {
			defer close(dones[i])
			defer func() { ended <- struct{}{} }()
			return part(pctx)
		})
	}
	select {
	case <-ctx.Done():
	case <-ended:
	}
	for i := range parts {
		cancels[i]()
		<-dones[i]
	}
	return g.Wait()
}

// All runs the parts at once until ctx ends or one of them fails, which
// ends the others; it returns the first error. The parts stop in no
// particular order.
func All(ctx context.Context, parts ...Func) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, part := range parts {
		g.Go(func() error { return part(gctx) })
	}
	return g.Wait()
}
