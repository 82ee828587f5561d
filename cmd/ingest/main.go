// Command ingest is RIG-Go's back-end API: back-ends POST messages for
// users to it, and it stores and publishes them through NATS.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/ingest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }() // a second signal kills at once
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.ParseIngest(args, getenv, stdout)
	if err != nil {
		return err
	}
	log := cfg.Log.Logger(stderr).With("component", "ingest")
	// Libraries that log through the standard logger get the same
	// format and redaction.
	slog.SetDefault(log)
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.APIPort))
	if err != nil {
		return fmt.Errorf("API_PORT=%d: %w", cfg.APIPort, err)
	}
	// No reconnect buffer: a publish while NATS is away must fail (503)
	// rather than wait in a buffer and go out after the client was told no.
	b, err := broker.Open(cfg.NATS, log, nats.ReconnectBufSize(-1))
	if err != nil {
		ln.Close()
		return err
	}
	defer b.Close()
	srv, err := ingest.New(cfg, log, b)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("ingest listening", "url", fmt.Sprintf("http://localhost:%d", cfg.APIPort),
		"messages", fmt.Sprintf("POST http://localhost:%d/v1/messages", cfg.APIPort), "nats", cfg.NATS.URLs)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("ingest stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("ingest stopped")
	return nil
}
