package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/ready"
)

const (
	// quorumInterval is how often the history stream's leader is asked.
	quorumInterval = time.Second
	// quorumTimeout bounds one question.
	quorumTimeout = 2 * time.Second
	// quorumFailures is how many failed questions in a row make ingest
	// unready, so one slow answer on a busy server does not.
	quorumFailures = 2
	// replicaSilence is how long the leader may not have heard from a
	// replica before it no longer counts towards a quorum. A leader hears
	// from its replicas within milliseconds; one that lost them goes on
	// answering, calling them current, for several seconds before it
	// steps down.
	replicaSilence = 5 * time.Second
)

// quorum follows whether the history stream can store messages. On a
// cluster that lost a majority of its nodes, ingest is still connected to
// NATS and the stream still exists, yet nothing can be stored: only the
// stream's leader stores, and only with a majority of its replicas.
// Publishing finds out per message (503, at worst after PUBLISH_TIMEOUT);
// readiness must know before, so load balancers and orchestrators see it.
type quorum struct {
	b     *broker.Broker
	log   *slog.Logger
	state ready.State // ready unless the last quorumFailures questions failed
}

func newQuorum(b *broker.Broker, log *slog.Logger) *quorum { return &quorum{b: b, log: log} }

// Ready returns nil unless the last quorumFailures questions failed.
func (q *quorum) Ready() error { return q.state.Err() }

// Run asks every quorumInterval until ctx ends.
func (q *quorum) Run(ctx context.Context) error {
	t := time.NewTicker(quorumInterval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		// Until the broker is ready it says why itself.
		if q.b.Ready() != nil {
			failures = 0
			q.state.Ready()
			continue
		}
		err := q.ask(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			failures = 0
			if q.state.Ready() {
				q.log.Info("JetStream available again", "stream", broker.StreamName)
			}
			continue
		}
		if failures++; failures < quorumFailures {
			continue
		}
		q.state.Fail(fmt.Errorf("JetStream cannot store messages (no quorum?): %w", err))
		if failures == quorumFailures {
			q.log.Warn("JetStream cannot store messages: not ready", "stream", broker.StreamName, "err", err)
		}
	}
}

// ask asks the history stream's leader for the stream's state and checks
// that the leader has heard lately from enough replicas to store.
func (q *quorum) ask(ctx context.Context) error {
	actx, cancel := context.WithTimeout(ctx, quorumTimeout)
	defer cancel()
	s, err := q.b.JS.Stream(actx, broker.StreamName)
	if err != nil {
		return fmt.Errorf("stream %s info: %w", broker.StreamName, err)
	}
	return hasQuorum(s.CachedInfo())
}

// hasQuorum reports whether a stream's leader, with the replicas it heard
// from lately, is a majority of the stream's replicas.
func hasQuorum(info *jetstream.StreamInfo) error {
	replicas := max(info.Config.Replicas, 1)
	if replicas == 1 {
		return nil
	}
	c := info.Cluster
	if c == nil || c.Leader == "" {
		return fmt.Errorf("stream %s has no leader", info.Config.Name)
	}
	alive := 1 // the leader
	for _, r := range c.Replicas {
		if !r.Offline && r.Active < replicaSilence {
			alive++
		}
	}
	if alive <= replicas/2 {
		return fmt.Errorf("stream %s: leader %s hears from %d of %d replicas", info.Config.Name, c.Leader, alive, replicas)
	}
	return nil
}
