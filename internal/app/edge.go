package app

import (
	"context"
	"fmt"
	"net"

	"github.com/nats-io/nats.go"

	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/edge"
	"github.com/rig-go/rig/internal/run"
)

// Edge runs the edge until ctx ends, then drains it (see edge.Server.Run)
// and closes NATS last.
func Edge(ctx context.Context, env Env) error {
	cfg, err := config.ParseEdge(env.Args, env.Getenv, env.Stdout)
	if err != nil {
		return err
	}
	log := cfg.Log.Logger(env.Stderr).With("edge", cfg.EdgeID)
	env.setDefault(log)
	// Before the ports: an identity provider's key set that cannot be
	// fetched stops the edge here, with one line.
	verifier, err := auth.New(ctx, cfg.JWT, log)
	if err != nil {
		return err
	}
	// The public port opens when the edge is ready; fail now if it is taken.
	var ln edge.Listeners
	if ln.Public, err = env.listen("INBOUND_PORT", cfg.InboundPort); err != nil {
		return fmt.Errorf("INBOUND_PORT=%d: %w", cfg.InboundPort, err)
	}
	if cfg.MetricsPort != 0 {
		if ln.Ops, err = env.listen("METRICS_PORT", cfg.MetricsPort); err != nil {
			ln.Public.Close()
			return fmt.Errorf("METRICS_PORT=%d: %w", cfg.MetricsPort, err)
		}
	}
	b, err := broker.Open(cfg.NATS, log, nats.CustomInboxPrefix(broker.EdgeInbox))
	if err != nil {
		ln.Public.Close()
		if ln.Ops != nil {
			ln.Ops.Close()
		}
		return err
	}
	srv := edge.New(cfg, log, b, ln, verifier)
	public := port(srv.Addr())
	scheme, ws := "http", "ws"
	if cfg.TLS.Pair != nil {
		scheme, ws = "https", "wss"
	}
	if ops := srv.OpsAddr(); ops != nil {
		log.Info("operations port listening", "health", fmt.Sprintf("http://localhost:%d/health", port(ops)))
	}
	log.Info("edge started; its public port opens once it is ready", "url", fmt.Sprintf("%s://localhost:%d", scheme, public),
		"sse", fmt.Sprintf("%s://localhost:%d/socket/sse", scheme, public),
		"websocket", fmt.Sprintf("%s://localhost:%d/socket/websocket", ws, public), "nats", b.NC.ConnectedUrlRedacted())
	env.started(Addrs{Public: srv.Addr(), Ops: srv.OpsAddr(), NATS: b.EmbeddedURL()})
	// The edge drains its clients while NATS is still there.
	if err := run.Ordered(ctx, srv.Run, b.Run); err != nil {
		return err
	}
	log.Info("edge stopped")
	return nil
}

// port returns a TCP address's port (0 for another kind).
func port(a net.Addr) int {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.Port
	}
	return 0
}
