package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// notReady wraps the broker's reason for not being ready, which it logs
// itself; see NotReady.
type notReady struct{ error }

func (e notReady) Unwrap() error { return e.error }

// NotReady reports whether err is EnsureKV's "the broker is not ready
// yet", which the broker logs itself: callers retrying need not.
func NotReady(err error) bool {
	var n notReady
	return errors.As(err, &n)
}

// EnsureKV creates or updates the key-value bucket cfg once, within
// AttemptTimeout, with the history stream's replica count: it fails
// (NotReady) until the broker is ready. Unless NATS_REPLICAS is set, a
// cluster too small for that count gets a bucket of one replica. Callers
// retry.
func (b *Broker) EnsureKV(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if err := b.Ready(); err != nil {
		return nil, notReady{err}
	}
	r := b.Replicas()
	cfg.Replicas = r
	actx, cancel := context.WithTimeout(ctx, AttemptTimeout)
	defer cancel()
	actx, unwatch := b.denials.watch(actx, b.streamAPI("KV_"+cfg.Bucket))
	defer unwatch()
	kv, err := b.JS.CreateOrUpdateKeyValue(actx, cfg)
	if err != nil && b.cfg.Replicas == 0 && r > 1 && insufficient(err) {
		cfg.Replicas = 1
		kv, err = b.JS.CreateOrUpdateKeyValue(actx, cfg)
	}
	if d := deniedCause(actx); d != nil {
		// A user that may only read the bucket (an edge with least
		// privilege) takes it as ingest made it.
		lctx, cancel := context.WithTimeout(ctx, AttemptTimeout)
		defer cancel()
		kv, err = b.JS.KeyValue(lctx, cfg.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("bucket %s does not exist yet, and %w: waiting for ingest to create it", cfg.Bucket, d)
		}
		if err != nil {
			return nil, fmt.Errorf("look up bucket %s (%w): %w", cfg.Bucket, d, err)
		}
		return kv, nil
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %s: %w", AttemptTimeout, err)
		}
		return nil, fmt.Errorf("create or update bucket %s (replicas %d): %w", cfg.Bucket, cfg.Replicas, err)
	}
	return kv, nil
}

// WatchAll starts watching every key of kv: its current values, then a
// nil entry, then each change. The watch lives until ctx ends or it is
// stopped; starting it (creating its consumer) is bounded by
// AttemptTimeout, which a deadline on ctx could not do without ending the
// watch too.
func WatchAll(ctx context.Context, kv jetstream.KeyValue) (jetstream.KeyWatcher, error) {
	wctx, stop := context.WithCancel(ctx)
	type result struct {
		w   jetstream.KeyWatcher
		err error
	}
	done := make(chan result, 1)
	go func() {
		w, err := kv.WatchAll(wctx)
		done <- result{w, err}
	}()
	t := time.NewTimer(AttemptTimeout)
	defer t.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			stop()
			return nil, fmt.Errorf("watch bucket %s: %w", kv.Bucket(), r.err)
		}
		return watcher{r.w, stop}, nil
	case <-t.C:
		stop()
		if r := <-done; r.w != nil {
			_ = r.w.Stop()
		}
		return nil, fmt.Errorf("watch bucket %s: no answer within %s", kv.Bucket(), AttemptTimeout)
	}
}

// watcher is a watch that also ends its context when stopped.
type watcher struct {
	jetstream.KeyWatcher
	stop context.CancelFunc
}

func (w watcher) Stop() error {
	err := w.KeyWatcher.Stop()
	w.stop()
	return err
}
