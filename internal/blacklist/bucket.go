package blacklist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/ready"
	"github.com/rig-go/rig/internal/retry"
)

// BucketName is the JetStream KV bucket holding the blacklist.
const BucketName = "RIG_BLACKLIST"

// subjectPrefix is where the bucket stores key k: subjectPrefix + k.
const subjectPrefix = "$KV." + BucketName + "."

// markerTTL is how long the bucket keeps the marker JetStream writes when an
// entry's TTL ends. Watchers see the marker live; an edge that was away
// longer re-reads the whole bucket anyway, so markers need not live long.
const markerTTL = 10 * time.Minute

// maxCASAttempts bounds the compare-and-set loop of Add under contention.
const maxCASAttempts = 20

// Config is the bucket's configuration: one value per key, per-key TTLs
// (LimitMarkerTTL turns them on), file storage. Its replica count is the
// history stream's (see broker.EnsureKV).
func Config() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:         BucketName,
		Description:    "RIG-Go: blacklisted sessions (jti), each expiring when its blacklisting does",
		History:        1,
		Storage:        jetstream.FileStorage,
		LimitMarkerTTL: markerTTL,
	}
}

// Bucket hands out the blacklist bucket, which Run ensures once the broker
// knows the replica count (that of the history stream), and again whenever
// an operation finds it gone.
type Bucket struct {
	b   *broker.Broker
	log *slog.Logger

	kv    atomic.Pointer[jetstream.KeyValue]
	state *ready.State // why there is no bucket
	kick  chan struct{}
}

// NewBucket returns the blacklist bucket of b, not ready until Run has
// ensured it.
func NewBucket(b *broker.Broker, log *slog.Logger) *Bucket {
	return &Bucket{b: b, log: log, kick: make(chan struct{}, 1), state: ready.New("blacklist bucket not created yet")}
}

// KV returns the bucket, or why it is not available.
func (k *Bucket) KV() (jetstream.KeyValue, error) {
	if p := k.kv.Load(); p != nil {
		return *p, nil
	}
	if err := k.state.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("blacklist bucket lost") // Lost is between its two steps
}

// Ready returns nil when the bucket exists.
func (k *Bucket) Ready() error {
	_, err := k.KV()
	return err
}

// Lost drops the bucket handle after an error saying the bucket is gone
// and has it ensured again.
func (k *Bucket) Lost(err error) {
	if k.kv.Swap(nil) != nil {
		k.state.Fail(fmt.Errorf("blacklist bucket lost: %w", err))
		k.log.Warn("blacklist bucket lost, creating it again", "bucket", BucketName, "err", err)
	}
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// Run ensures the bucket, and again each time it is lost, until ctx ends.
func (k *Bucket) Run(ctx context.Context) error {
	for {
		k.ensure(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-k.kick:
		}
	}
}

func (k *Bucket) ensure(ctx context.Context) {
	_ = retry.Do(ctx, func(ctx context.Context) error {
		kv, err := k.b.EnsureKV(ctx, Config())
		if err != nil {
			return err
		}
		k.state.Ready()
		k.kv.Store(&kv)
		k.log.Info("blacklist bucket ready", "bucket", BucketName, "replicas", k.b.Replicas())
		return nil
	}, func(err error) {
		// While the broker is not ready it logs why itself.
		if k.state.Fail(fmt.Errorf("blacklist bucket not ready: %w", err)) && !broker.NotReady(err) {
			k.log.Warn("blacklist bucket not ready, retrying", "bucket", BucketName, "err", err)
		}
	})
}

// gone reports whether err means the bucket's stream does not exist.
func gone(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) ||
		errors.Is(err, jetstream.ErrNoStreamResponse)
}

func (k *Bucket) failed(err error) error {
	if gone(err) {
		k.Lost(err)
	}
	return err
}

// Add blacklists jti until validity from now, or keeps a later expiry it
// already has: blacklisting twice never shortens. It returns the entry as
// stored. Concurrent Adds of one jti settle on the latest expiry, because
// each write is a compare-and-set on the revision it read.
func (k *Bucket) Add(ctx context.Context, jti string, validity time.Duration) (Entry, error) {
	key, err := Key(jti)
	if err != nil {
		return Entry{}, err
	}
	if validity < time.Second || validity > MaxValidity {
		return Entry{}, fmt.Errorf("blacklist validity %s: expected 1s to %s", validity, MaxValidity)
	}
	kv, err := k.KV()
	if err != nil {
		return Entry{}, err
	}
	want := Entry{SessionID: jti, Expires: time.Now().Add(validity).UTC().Truncate(time.Millisecond)}
	value := want.encode()
	for range maxCASAttempts {
		done, have, err := k.addOnce(ctx, kv, key, want, value, validity)
		if err != nil {
			return Entry{}, k.failed(fmt.Errorf("blacklist %q: %w", jti, err))
		}
		if done {
			return have, nil
		}
	}
	return Entry{}, fmt.Errorf("blacklist %q: still conflicting after %d concurrent updates", jti, maxCASAttempts)
}

// addOnce reads the key and writes want unless a later expiry is stored.
// done is false when another writer got in between (retry).
func (k *Bucket) addOnce(ctx context.Context, kv jetstream.KeyValue, key string, want Entry, value []byte, ttl time.Duration) (done bool, have Entry, err error) {
	actx, cancel := context.WithTimeout(ctx, broker.AttemptTimeout)
	defer cancel()
	cur, err := kv.Get(actx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// Create also takes over a key whose last revision is a delete or
		// TTL marker, by compare-and-set on that marker.
		_, err = kv.Create(actx, key, value, jetstream.KeyTTL(ttl))
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, Entry{}, nil
		}
		return err == nil, want, err
	}
	if err != nil {
		return false, Entry{}, fmt.Errorf("read key %s: %w", key, err)
	}
	old, derr := decodeEntry(cur.Value())
	if derr == nil && !old.Expires.Before(want.Expires) {
		return true, old, nil
	}
	if derr == nil && time.Until(old.Expires) < expiryMargin {
		// The stored entry is expiring or expired: JetStream may already
		// have queued the marker that replaces it, a subject rollup
		// published after the expiry, which would also remove a value
		// written over the entry now (the Add acknowledged, the session
		// not listed). Wait for the marker, then create on it.
		return false, Entry{}, waitReplaced(actx, kv, key, cur.Revision())
	}
	// KeyValue.Update cannot set a TTL, so this publishes to the key's
	// subject exactly as Update does (expecting the revision read), plus
	// the TTL of the new expiry.
	_, err = k.b.JS.PublishMsg(actx, &nats.Msg{Subject: subjectPrefix + key, Data: value},
		jetstream.WithExpectLastSequencePerSubject(cur.Revision()), jetstream.WithMsgTTL(ttl))
	if conflict(err) {
		return false, Entry{}, nil
	}
	return err == nil, want, err
}

// expiryMargin: an entry this close to its expiry is not written over
// (see addOnce); more than the clocks of two machines of one cluster differ.
const expiryMargin = time.Second

// waitReplaced polls until key's revision rev is gone: removed by its TTL
// marker, or replaced by another writer.
func waitReplaced(ctx context.Context, kv jetstream.KeyValue, key string, rev uint64) error {
	pause := retry.Backoff{First: 20 * time.Millisecond, Max: 100 * time.Millisecond}
	for {
		cur, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || (err == nil && cur.Revision() != rev) {
			return nil
		}
		if err == nil {
			err = pause.Wait(ctx)
		}
		if err != nil {
			return fmt.Errorf("wait for the expiring entry %s to be removed: %w", key, err)
		}
	}
}

// conflict reports whether err is a failed compare-and-set: the key
// changed since it was read. Replicated streams report it as 10164.
func conflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Lookup returns jti's entry while it is listed.
func (k *Bucket) Lookup(ctx context.Context, jti string) (Entry, bool, error) {
	key, err := Key(jti)
	if err != nil {
		return Entry{}, false, err
	}
	kv, err := k.KV()
	if err != nil {
		return Entry{}, false, err
	}
	actx, cancel := context.WithTimeout(ctx, broker.AttemptTimeout)
	defer cancel()
	cur, err := kv.Get(actx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, k.failed(fmt.Errorf("look up %q: %w", jti, err))
	}
	e, err := decodeEntry(cur.Value())
	if err != nil {
		return Entry{}, false, err
	}
	if !e.Listed(time.Now()) {
		return Entry{}, false, nil // expired; JetStream removes it shortly
	}
	return e, true, nil
}
