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

// gcFloor: while GOGC is unset, ingest's heap may grow this far above its
// live heap before a collection (internal/gcfloor says why; the edge, whose
// heap holds the clients, keeps Go's default).
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
