package auth

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/rig-go/rig/internal/config"
)

// jwks holds an identity provider's key sets: fetched, parsed, cached and
// refreshed in the background by jwkset (the storage under
// MicahParks/keyfunc). keyfunc's own Keyfunc is not used: it makes a
// caller wait while the unknown-kid refresh is rate-limited (a forged kid
// would hold a request for as long), and it cannot refuse keys published
// for encryption while accepting keys that say nothing of their use.
type jwks struct {
	// cached reads the keys as last fetched; refresher fetches every URL
	// again when asked for a kid it does not have.
	cached, refresher jwkset.Storage
	// limit lets one unknown-kid fetch through per
	// JWT_JWKS_UNKNOWN_KID_REFRESH; group makes the tokens that arrive
	// while it runs wait for it instead of being refused.
	limit    *rate.Limiter
	group    singleflight.Group
	timeout  time.Duration
	interval time.Duration
	fetches  atomic.Int64 // unknown-kid fetches, for tests
}

// newJWKS fetches every URL once, with the timeout and size bound of cfg:
// a key set that cannot be fetched at start is an error, since until it
// is, every token it signs would be refused without a word at start.
// Background refreshes run until ctx ends; one that fails keeps the keys
// already cached, and is logged.
func newJWKS(ctx context.Context, cfg config.JWKS, log *slog.Logger) (*jwks, error) {
	client := &http.Client{
		Timeout:   cfg.Timeout,
		Transport: &limitedTransport{base: http.DefaultTransport, max: int64(cfg.MaxSize)},
	}
	urls := make(map[string]jwkset.Storage, len(cfg.URLs))
	for _, u := range cfg.URLs {
		st, err := jwkset.NewStorageFromHTTP(u, jwkset.HTTPClientStorageOptions{
			Client:          client,
			Ctx:             ctx,
			HTTPTimeout:     cfg.Timeout,
			RefreshInterval: cfg.Refresh,
			RefreshErrorHandler: func(_ context.Context, err error) {
				log.Warn("JWKS refresh failed; the keys fetched before stay in use", "url", u, "err", err)
			},
		})
		if err != nil {
			var ne net.Error
			if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
				return nil, fmt.Errorf("JWT_JWKS_URL=%s: no answer within JWT_JWKS_TIMEOUT=%s: %w", u, cfg.Timeout, err)
			}
			return nil, fmt.Errorf("JWT_JWKS_URL=%s: %w", u, err)
		}
		keys, _ := st.KeyReadAll(ctx)
		log.Info("JWKS fetched", "url", u, "keys", len(keys), "refresh", cfg.Refresh.String())
		urls[u] = st
	}
	cached, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{HTTPURLs: urls})
	if err != nil {
		return nil, err
	}
	// Unlimited here: limit, in front, decides when a fetch may happen.
	refresher, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{HTTPURLs: urls, RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1)})
	if err != nil {
		return nil, err
	}
	return &jwks{cached: cached, refresher: refresher,
		limit: rate.NewLimiter(rate.Every(cfg.UnknownKIDRefresh), 1), timeout: cfg.Timeout, interval: cfg.UnknownKIDRefresh}, nil
}

// key returns the key the set has under kid for t's algorithm, fetching
// the set again (rate-limited) when kid is unknown: the identity provider
// may have rotated to a new key since the last refresh.
func (j *jwks) key(t *jwt.Token, kid string) (any, error) {
	alg := t.Method.Alg()
	jwk, err := j.cached.KeyRead(context.Background(), kid)
	if errors.Is(err, jwkset.ErrKeyNotFound) {
		j.refresh(kid)
		jwk, err = j.cached.KeyRead(context.Background(), kid)
	}
	if errors.Is(err, jwkset.ErrKeyNotFound) {
		return nil, &keyError{fmt.Sprintf("no key with kid %s in the key set (JWT_JWKS_URL; fetched again for an unknown kid at most every %s)", quoteClaim(kid), j.interval)}
	}
	if err != nil {
		return nil, &keyError{"key set unreadable"}
	}
	key, why := usable(jwk, alg)
	if key == nil {
		return nil, &keyError{fmt.Sprintf("key with kid %s %s", quoteClaim(kid), why)}
	}
	return key, nil
}

// all returns every cached key usable for alg, for a token without a kid.
func (j *jwks) all(alg string) []any {
	jwks, _ := j.cached.KeyReadAll(context.Background())
	var keys []any
	for _, jwk := range jwks {
		if key, _ := usable(jwk, alg); key != nil {
			keys = append(keys, key)
		}
	}
	return keys
}

// usable returns jwk's public key if it may verify alg, or why not: its
// alg, when the set names one, must be the token's (RFC 7517 §4.4); a key
// for encryption signs nothing; and the key type must fit alg.
func usable(jwk jwkset.JWK, alg string) (any, string) {
	m := jwk.Marshal()
	if a := m.ALG.String(); a != "" && a != alg {
		return nil, fmt.Sprintf("is for algorithm %s, not %s", quoteClaim(a), quoteClaim(alg))
	}
	if m.USE != "" && m.USE != jwkset.UseSig {
		return nil, fmt.Sprintf("is for use %s, not signatures", quoteClaim(string(m.USE)))
	}
	key := jwk.Key()
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = pk.Public()
	}
	if !fits(alg, key) {
		return nil, fmt.Sprintf("(%s) cannot verify algorithm %s", m.KTY, quoteClaim(alg))
	}
	return key, ""
}

// refresh fetches the key sets again, unless one was fetched for an
// unknown kid less than JWT_JWKS_UNKNOWN_KID_REFRESH ago; a call while a
// fetch runs waits for it.
func (j *jwks) refresh(kid string) {
	_, _, _ = j.group.Do("refresh", func() (any, error) {
		if !j.limit.Allow() {
			return nil, nil
		}
		j.fetches.Add(1)
		ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
		defer cancel()
		// Asking the refresher for the kid fetches every URL (and logs a
		// failure through their error handler); the result is read from
		// cached, which shares the storage.
		_, _ = j.refresher.KeyRead(ctx, kid)
		return nil, nil
	})
}

// limitedTransport refuses a key set body larger than max: a JWKS is a
// few KiB, and an endpoint that streams without end must not fill memory.
type limitedTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, fmt.Errorf("key set of %d bytes exceeds JWT_JWKS_MAX_SIZE (%d bytes)", resp.ContentLength, t.max)
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: t.max, max: t.max}
	return resp, nil
}

type limitedBody struct {
	io.ReadCloser
	left, max int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more than allowed tells a body at the limit from a
		// larger one.
		var one [1]byte
		n, err := b.ReadCloser.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("key set larger than JWT_JWKS_MAX_SIZE (%d bytes)", b.max)
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}
