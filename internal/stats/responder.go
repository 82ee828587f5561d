package stats

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// Responder answers ingest's requests on Subject for one edge.
type Responder struct {
	nc   *nats.Conn
	read func() Snapshot
	log  *slog.Logger
	sub  *nats.Subscription
}

// NewResponder answers on nc with what read returns, from now until Run's
// context ends.
func NewResponder(nc *nats.Conn, read func() Snapshot, log *slog.Logger) (*Responder, error) {
	r := &Responder{nc: nc, read: read, log: log}
	sub, err := nc.Subscribe(Subject, r.answer)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", Subject, err)
	}
	r.sub = sub
	return r, nil
}

// Run answers until ctx ends.
func (r *Responder) Run(ctx context.Context) error {
	<-ctx.Done()
	_ = r.sub.Unsubscribe()
	return nil
}

func (r *Responder) answer(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	s := r.read()
	s.At = time.Now()
	if err := r.nc.Publish(m.Reply, encode(s)); err != nil {
		r.log.Warn("stats reply not sent", "err", err)
	}
}
