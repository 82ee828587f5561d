package app

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/ingest"
	"github.com/rig-go/rig/internal/run"
)

// Ingest runs the back-end API until ctx ends, then lets the requests in
// progress finish and closes NATS last.
func Ingest(ctx context.Context, env Env) error {
	cfg, err := config.ParseIngest(env.Args, env.Getenv, env.Stdout)
	if err != nil {
		return err
	}
	log := cfg.Log.Logger(env.Stderr).With("component", "ingest")
	env.setDefault(log)
	ln, err := env.listen("API_PORT", cfg.APIPort)
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
	srv, err := ingest.New(cfg, log, b, ln)
	if err != nil {
		ln.Close()
		b.Close()
		return err
	}
	api := port(srv.Addr())
	log.Info("ingest listening", "url", fmt.Sprintf("http://localhost:%d", api),
		"messages", fmt.Sprintf("POST http://localhost:%d/v1/messages", api), "nats", cfg.NATS.URLs)
	env.started(Addrs{Public: srv.Addr(), NATS: b.EmbeddedURL()})
	if err := run.Ordered(ctx, srv.Run, b.Run); err != nil {
		return err
	}
	log.Info("ingest stopped")
	return nil
}
