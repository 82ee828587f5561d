// Command ingest is RIG-Go's back-end API: back-ends POST messages for
// users to it, and it stores and publishes them through NATS.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rig-go/rig/internal/app"
	"github.com/rig-go/rig/internal/gcfloor"
)

// gcFloor is how far above its live heap ingest lets its heap grow before
// a collection, while GOGC is unset: ingest holds no client connections,
// its live heap is small and every message allocates, so Go's default
// collected every few seconds at a modest rate and each collection showed
// in the latency tail (docs/BENCHMARKS.md, issue 17). Costs at most this
// much memory; a live heap above it is collected as with GOGC=100.
const gcFloor = 64 << 20

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }() // a second signal kills at once
	if os.Getenv("GOGC") == "" {
		defer gcfloor.Start(gcFloor)()
	}
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "admin" {
		return runAdmin(ctx, args[1:], getenv, stdout, stderr)
	}
	return app.Ingest(ctx, app.Env{Args: args, Getenv: getenv, Stdout: stdout, Stderr: stderr, DefaultLogger: true})
}
