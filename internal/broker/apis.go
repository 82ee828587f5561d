package broker

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// APIsBucket is the JetStream key-value bucket of the API gateway's routes
// added at runtime (ingest's /v1/apis); every edge watches it.
const APIsBucket = "RIG_APIS"

// APIKey is the bucket key of an API id. Ids may hold bytes keys may not
// (":", "~"), so the key is the id in unpadded base64url.
func APIKey(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// APIID is the id of a bucket key, the inverse of APIKey.
func APIID(key string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(key)
	if err != nil {
		return "", fmt.Errorf("bucket %s: key %q is not an API id in base64url: %w", APIsBucket, key, err)
	}
	return string(b), nil
}

// APIs is the routes bucket of a broker, created on first use.
type APIs struct {
	b  *Broker
	mu sync.Mutex
	kv jetstream.KeyValue
}

// NewAPIs returns the routes bucket of b; nothing is created until KV.
func NewAPIs(b *Broker) *APIs { return &APIs{b: b} }

// KV returns the bucket, creating it on first use with the history stream's
// replica count. One attempt is bounded by attemptTimeout (see there);
// callers retry.
func (a *APIs) KV(ctx context.Context) (jetstream.KeyValue, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.kv != nil {
		return a.kv, nil
	}
	b := a.b
	// The replica count is known once the history stream is.
	if err := b.Ready(); err != nil {
		return nil, err
	}
	r := b.Replicas()
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	cfg := jetstream.KeyValueConfig{
		Bucket:      APIsBucket,
		Description: "RIG-Go: API gateway routes added at runtime (/v1/apis)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    r,
	}
	kv, err := b.JS.CreateOrUpdateKeyValue(actx, cfg)
	if err != nil && b.cfg.Replicas == 0 && r > 1 && insufficient(err) {
		cfg.Replicas = 1
		kv, err = b.JS.CreateOrUpdateKeyValue(actx, cfg)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %s: %w", attemptTimeout, err)
		}
		return nil, fmt.Errorf("create or update bucket %s (replicas %d): %w", APIsBucket, cfg.Replicas, err)
	}
	a.kv = kv
	return kv, nil
}
