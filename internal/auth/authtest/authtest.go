// Package authtest is an identity provider for tests: keys they generate,
// published as a JSON Web Key Set over real HTTP, and counted fetches.
package authtest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Key is one entry of a key set. Public is an *rsa.PublicKey,
// *ecdsa.PublicKey, ed25519.PublicKey, or []byte for a symmetric ("oct")
// key, which a verifier must never use. ALG and USE are left out when empty.
type Key struct {
	KID, ALG, USE string
	Public        any
}

// JWKS serves a key set that a test can change while it is served.
type JWKS struct {
	srv    *httptest.Server
	mu     sync.Mutex
	status int
	body   []byte
	delay  time.Duration
	stream bool
	hits   atomic.Int64
}

// NewJWKS serves keys on ln (nil: a loopback port of the system's
// choosing) until the test ends.
func NewJWKS(t testing.TB, ln net.Listener, keys ...Key) *JWKS {
	t.Helper()
	j := &JWKS{}
	j.Publish(keys...)
	j.srv = httptest.NewUnstartedServer(http.HandlerFunc(j.serve))
	if ln != nil {
		j.srv.Listener.Close()
		j.srv.Listener = ln
	}
	j.srv.Start()
	t.Cleanup(j.srv.Close)
	return j
}

func (j *JWKS) serve(w http.ResponseWriter, r *http.Request) {
	j.hits.Add(1)
	j.mu.Lock()
	status, body, delay, stream := j.status, j.body, j.delay, j.stream
	j.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !stream {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(status)
	if stream && len(body) > 1 {
		// Two pieces with a flush between: sent chunked, without a length.
		_, _ = w.Write(body[:1])
		w.(http.Flusher).Flush()
		body = body[1:]
	}
	_, _ = w.Write(body)
}

// Stream makes every next answer chunked, without a Content-Length.
func (j *JWKS) Stream(on bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.stream = on
}

// URL is the key set's address.
func (j *JWKS) URL() string { return j.srv.URL + "/.well-known/jwks.json" }

// Hits counts the requests served so far.
func (j *JWKS) Hits() int64 { return j.hits.Load() }

// Publish replaces the served key set with keys.
func (j *JWKS) Publish(keys ...Key) { j.Serve(http.StatusOK, Marshal(keys...)) }

// Serve makes every next answer status with body, whatever it is.
func (j *JWKS) Serve(status int, body []byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.status, j.body = status, body
}

// Delay holds every next answer for d.
func (j *JWKS) Delay(d time.Duration) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.delay = d
}

// Marshal is keys as a JWK Set document (RFC 7517).
func Marshal(keys ...Key) []byte {
	set := struct {
		Keys []map[string]string `json:"keys"`
	}{Keys: []map[string]string{}}
	for _, k := range keys {
		m := map[string]string{}
		switch p := k.Public.(type) {
		case *rsa.PublicKey:
			m["kty"], m["n"], m["e"] = "RSA", b64(p.N.Bytes()), b64(big.NewInt(int64(p.E)).Bytes())
		case *ecdsa.PublicKey:
			// Uncompressed point: 0x04, then X and Y of the curve's size.
			pt, err := p.Bytes()
			if err != nil {
				panic(err)
			}
			size := (len(pt) - 1) / 2
			m["kty"], m["crv"] = "EC", p.Curve.Params().Name
			m["x"], m["y"] = b64(pt[1:1+size]), b64(pt[1+size:])
		case ed25519.PublicKey:
			m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64(p)
		case []byte:
			m["kty"], m["k"] = "oct", b64(p)
		default:
			panic("authtest: unsupported key type")
		}
		for name, v := range map[string]string{"kid": k.KID, "alg": k.ALG, "use": k.USE} {
			if v != "" {
				m[name] = v
			}
		}
		set.Keys = append(set.Keys, m)
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(err)
	}
	return b
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
