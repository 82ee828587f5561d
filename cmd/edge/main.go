// Command edge is RIG-Go's public gateway: browsers connect to it (SSE,
// WebSocket, long-polling) and receive their users' messages from NATS.
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

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/edge"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }() // a second signal kills at once
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "edge:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], getenv, stdout, stderr)
	}
	cfg, err := config.ParseEdge(args, getenv, stdout)
	if err != nil {
		return err
	}
	log := cfg.Log.Logger(stderr).With("edge", cfg.EdgeID)
	// Libraries that log through the standard logger get the same
	// format and redaction.
	slog.SetDefault(log)
	// The public port opens when the edge is ready; fail now if it is taken.
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.InboundPort))
	if err != nil {
		return fmt.Errorf("INBOUND_PORT=%d: %w", cfg.InboundPort, err)
	}
	ln.Close()
	var opsLn net.Listener
	if cfg.MetricsPort != 0 {
		if opsLn, err = net.Listen("tcp", ":"+strconv.Itoa(cfg.MetricsPort)); err != nil {
			return fmt.Errorf("METRICS_PORT=%d: %w", cfg.MetricsPort, err)
		}
	}
	b, err := broker.Open(cfg.NATS, log)
	if err != nil {
		if opsLn != nil {
			opsLn.Close()
		}
		return err
	}
	defer b.Close()
	srv := edge.New(cfg, log, b)
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve() }()
	if opsLn != nil {
		go func() { errc <- srv.ServeOps(opsLn) }()
		log.Info("operations port listening", "health", fmt.Sprintf("http://localhost:%d/health", cfg.MetricsPort))
	}
	log.Info("edge started; its public port opens once it is ready", "url", fmt.Sprintf("http://localhost:%d", cfg.InboundPort),
		"sse", fmt.Sprintf("http://localhost:%d/socket/sse", cfg.InboundPort),
		"websocket", fmt.Sprintf("ws://localhost:%d/socket/websocket", cfg.InboundPort), "nats", b.NC.ConnectedUrlRedacted())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("edge stopping", "drain_timeout", cfg.DrainTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout+5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("edge stopped")
	return nil
}
