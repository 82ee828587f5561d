package broker

import (
	"context"
	"encoding/base64"
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

// KV returns the bucket, creating it on first use (see EnsureKV); one
// attempt, which callers retry.
func (a *APIs) KV(ctx context.Context) (jetstream.KeyValue, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.kv != nil {
		return a.kv, nil
	}
	kv, err := a.b.EnsureKV(ctx, jetstream.KeyValueConfig{
		Bucket:      APIsBucket,
		Description: "RIG-Go: API gateway routes added at runtime (/v1/apis)",
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, err
	}
	a.kv = kv
	return kv, nil
}
