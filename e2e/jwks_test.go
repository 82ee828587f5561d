package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/auth/authtest"
)

const (
	idpIssuer   = "https://idp.test/realms/rig"
	idpAudience = "rig-push"
)

// startIdP serves keys as an identity provider's JWKS, on a test port.
func startIdP(t testing.TB, keys ...authtest.Key) *authtest.JWKS {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	return authtest.NewJWKS(t, ln, keys...)
}

// idpToken is a token as an identity provider signs it: kid, iss, aud.
type idpToken struct {
	key      crypto.Signer
	kid, iss string
	aud      []string
	jti      string
	ttl      time.Duration
}

func (o idpToken) mint(t testing.TB, user string) string {
	t.Helper()
	if o.iss == "" {
		o.iss = idpIssuer
	}
	if o.aud == nil {
		o.aud = []string{idpAudience}
	}
	if o.jti == "" {
		o.jti = fmt.Sprintf("%s-%d", user, time.Now().UnixNano())
	}
	if o.ttl == 0 {
		o.ttl = time.Hour
	}
	tok, err := auth.MintWithKey(o.key, o.kid, auth.Claims{User: user, ID: o.jti, TTL: o.ttl, Issuer: o.iss, Audience: o.aud}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func rsaKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// refusedSSE opens an SSE stream that must be refused with status, its JSON
// error saying want.
func refusedSSE(t testing.TB, u string, status int, want string) {
	t.Helper()
	s, r := DialSSE(t, u, nil)
	if s != nil {
		s.Close()
		t.Fatalf("stream opened; want %d saying %q", status, want)
	}
	if msg := r.ErrorMessage(t); r.Status != status || !strings.Contains(msg, want) {
		t.Fatalf("got %d %q; want %d saying %q", r.Status, msg, status, want)
	}
}

func mustConnectWS(t testing.TB, edge, token string) *WS {
	t.Helper()
	w := MustWS(t, wsURL(edge, plainQuery(token)))
	if ev := w.Next(t, 5*time.Second); ev.Event != "connected" {
		t.Fatalf("first frame %+v, want connected", ev)
	}
	return w
}

func wsMessage(t testing.TB, w *WS, want string) {
	t.Helper()
	for {
		ev := w.Next(t, 5*time.Second)
		if ev.Event == "heartbeat" {
			continue
		}
		if ev.Event != "message" || !strings.Contains(string(ev.Data), want) {
			t.Fatalf("frame %+v, want a message with %s", ev, want)
		}
		return
	}
}

// TestJWKSTokensAndRotation: an edge and ingest that trust an identity
// provider's JWKS (RS256, kid, iss, aud). SSE and WebSocket connect with
// its tokens; foreign issuers and audiences get 401 naming the claim; the
// provider rotates to a new key while clients are connected: one fetch
// later new tokens get in, the removed key's tokens do not, and the
// connections already open keep receiving until their tokens expire (a
// removed key does not end a session; the blacklist does). The ingest's
// blacklist rule reads the expiry of a JWKS token.
func TestJWKSTokensAndRotation(t *testing.T) {
	k1, k2 := rsaKey(t), rsaKey(t)
	idp := startIdP(t, authtest.Key{KID: "k1", ALG: "RS256", USE: "sig", Public: k1.Public()})
	jwtEnv := map[string]string{"JWT_JWKS_URL": idp.URL(), "JWT_ISSUER": idpIssuer, "JWT_AUDIENCE": "other-app," + idpAudience}
	edgeEnv := map[string]string{"LONGPOLL_TIMEOUT": "300ms"} // a poll that is let in answers soon
	for k, v := range jwtEnv {
		edgeEnv[k] = v
	}
	st := StartStack(t, edgeEnv, jwtEnv)
	edge := st.Edge.URL
	if got := idp.Hits(); got != 2 {
		t.Fatalf("the JWKS was fetched %d times at start; want 2 (edge, ingest)", got)
	}

	alice := MustSSE(t, sseURL(edge, idpToken{key: k1, kid: "k1"}.mint(t, "alice")))
	bob := mustConnectWS(t, edge, idpToken{key: k1, kid: "k1"}.mint(t, "bob"))
	Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 1})
	Post(t, st.Ingest.URL, map[string]any{"user": "bob", "n": 1})
	if ev := alice.NextMessage(t, 5*time.Second); !strings.Contains(ev.Data, `"n":1`) {
		t.Fatalf("alice got %+v", ev)
	}
	wsMessage(t, bob, `"n":1`)

	t.Run("foreign issuer or audience is 401 naming the claim", func(t *testing.T) {
		refusedSSE(t, sseURL(edge, idpToken{key: k1, kid: "k1", iss: "https://evil.test"}.mint(t, "alice")), 401,
			`claim "iss" is "https://evil.test"; expected "https://idp.test/realms/rig" (JWT_ISSUER)`)
		refusedSSE(t, sseURL(edge, idpToken{key: k1, kid: "k1", aud: []string{"billing"}}.mint(t, "alice")), 401,
			`claim "aud" is ["billing"]; expected one of "other-app", "rig-push" (JWT_AUDIENCE)`)
		_, r := DialWS(t, wsURL(edge, plainQuery(idpToken{key: k1, kid: "k1", aud: []string{"billing"}}.mint(t, "alice"))))
		if msg := r.ErrorMessage(t); r.Status != 401 || !strings.Contains(msg, `claim "aud"`) {
			t.Fatalf("WebSocket with a foreign audience: %d %q", r.Status, msg)
		}
		// The shared secret still verifies HMAC tokens, but the issuer
		// rule holds for them too.
		refusedSSE(t, sseURL(edge, Token(t, "alice")), 401, `no "iss" claim`)
	})

	// The provider rotates: k2 published, k1 removed.
	idp.Publish(authtest.Key{KID: "k2", ALG: "RS256", USE: "sig", Public: k2.Public()})
	before := idp.Hits()
	carolJTI := fmt.Sprintf("carol-%d", time.Now().UnixNano())
	carolTok := idpToken{key: k2, kid: "k2", jti: carolJTI, ttl: 3 * time.Hour}.mint(t, "carol")
	carol := MustSSE(t, sseURL(edge, carolTok))
	dave := mustConnectWS(t, edge, idpToken{key: k2, kid: "k2"}.mint(t, "dave"))
	if got := idp.Hits() - before; got != 1 {
		t.Fatalf("two connections with the new kid made %d fetches; want 1", got)
	}
	t.Run("the removed key's tokens are refused for new connections", func(t *testing.T) {
		refusedSSE(t, sseURL(edge, idpToken{key: k1, kid: "k1"}.mint(t, "erin")), 401, `no key with kid "k1"`)
		_, r := DialWS(t, wsURL(edge, plainQuery(idpToken{key: k1, kid: "k1"}.mint(t, "erin"))))
		if r.Status != 401 {
			t.Fatalf("WebSocket with the removed key: %d %s", r.Status, r.Body)
		}
		// A key used under the new kid is no way in either.
		refusedSSE(t, sseURL(edge, idpToken{key: k1, kid: "k2"}.mint(t, "erin")), 401, "bad signature")
		if got := idp.Hits() - before; got != 1 {
			t.Fatalf("refused kids fetched the JWKS again (%d fetches since the rotation); the refresh is rate-limited", got)
		}
	})
	t.Run("long-poll and Phoenix take the same tokens", func(t *testing.T) {
		if r := Get(t, edge+"/socket/longpoll?token="+idpToken{key: k2, kid: "k2"}.mint(t, "frank")); r.Status != 200 || !strings.Contains(string(r.Body), `"events"`) {
			t.Fatalf("long-poll with the new key: %d %s", r.Status, r.Body)
		}
		if r := Get(t, edge+"/socket/longpoll?token="+idpToken{key: k1, kid: "k1"}.mint(t, "frank")); r.Status != 401 || !strings.Contains(r.ErrorMessage(t), `no key with kid "k1"`) {
			t.Fatalf("long-poll with the removed key: %d %s", r.Status, r.Body)
		}
		p := dialPhx(t, edge, idpToken{key: k2, kid: "k2"}.mint(t, "frank"), "2.0.0")
		if pl := p.join(t, "1", "user:frank", map[string]any{}); !strings.Contains(string(pl), `"status":"ok"`) {
			t.Fatalf("Phoenix join with the new key: %s", pl)
		}
		if _, r := DialWS(t, wsURL(edge, phxQuery(idpToken{key: k1, kid: "k1"}.mint(t, "frank"), "2.0.0"))); r.Status != 401 {
			t.Fatalf("Phoenix socket with the removed key: %d %s", r.Status, r.Body)
		}
	})
	t.Run("connected clients keep receiving", func(t *testing.T) {
		for _, u := range []string{"alice", "bob", "carol", "dave"} {
			Post(t, st.Ingest.URL, map[string]any{"user": u, "n": 2})
		}
		for name, s := range map[string]*SSE{"alice (k1)": alice, "carol (k2)": carol} {
			if ev := s.NextMessage(t, 5*time.Second); !strings.Contains(ev.Data, `"n":2`) {
				t.Fatalf("%s got %+v", name, ev)
			}
		}
		wsMessage(t, bob, `"n":2`)
		wsMessage(t, dave, `"n":2`)
	})
	t.Run("ingest's blacklist takes the JWKS token's expiry", func(t *testing.T) {
		r := Do(t, "DELETE", st.Ingest.URL+"/v1/users/carol/sessions/"+url.PathEscape(carolJTI), "", nil,
			http.Header{"Authorization": {"Bearer " + carolTok}})
		if r.Status != 204 {
			t.Fatalf("DELETE: %d %s", r.Status, r.Body)
		}
		var status struct {
			ValidityInSeconds int64 `json:"validityInSeconds"`
		}
		Get(t, st.Ingest.URL+"/v1/session-blacklist/"+url.PathEscape(carolJTI)).JSON(t, &status)
		// The token lives 3h; the default (JWT_BLACKLIST_DEFAULT_EXPIRY_HOURS) is 1h.
		if status.ValidityInSeconds < 3*3600-60 || status.ValidityInSeconds > 3*3600+1 {
			t.Fatalf("blacklisted for %ds; want the token's 3h", status.ValidityInSeconds)
		}
		for {
			ev := carol.NextAny(t, 5*time.Second)
			if ev.Event == "session_killed" {
				break
			}
		}
		refusedSSE(t, sseURL(edge, carolTok), 401, "blacklisted")
	})
}

// TestJWKSPublicKeyFileES256: an edge with only an EC public key
// (JWT_PUBLIC_KEY_FILE, no shared secret) takes ES256 tokens on SSE and
// WebSocket and refuses every other algorithm and key.
func TestJWKSPublicKeyFileES256(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(ec.Public())
	file := filepath.Join(t.TempDir(), "idp.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	st := StartStack(t, map[string]string{"JWT_SECRET_KEY": "", "JWT_PUBLIC_KEY_FILE": file}, nil)
	edge := st.Edge.URL
	s := MustSSE(t, sseURL(edge, idpToken{key: ec}.mint(t, "alice")))
	w := mustConnectWS(t, edge, idpToken{key: ec}.mint(t, "alice"))
	Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 1})
	if ev := s.NextMessage(t, 5*time.Second); !strings.Contains(ev.Data, `"n":1`) {
		t.Fatalf("SSE got %+v", ev)
	}
	wsMessage(t, w, `"n":1`)
	refusedSSE(t, sseURL(edge, Token(t, "alice")), 401, `algorithm "HS256" is not accepted (accepted: ES256)`)
	refusedSSE(t, sseURL(edge, idpToken{key: rsaKey(t)}.mint(t, "alice")), 401, `algorithm "RS256" is not accepted`)
	refusedSSE(t, sseURL(edge, idpToken{key: other}.mint(t, "alice")), 401, "bad signature")
	// HMAC with the public key's own bytes as the secret: the classic
	// confusion, refused as every HMAC token is here.
	hs, _ := auth.Mint(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), auth.Claims{User: "alice", ID: "j", TTL: time.Hour}, time.Now())
	refusedSSE(t, sseURL(edge, hs), 401, `algorithm "HS256" is not accepted`)
}

// TestJWKSGatewaySecured: the API gateway's secured endpoint verifies a
// JWKS token with the same verifier, and forwards the identity it read.
func TestJWKSGatewaySecured(t *testing.T) {
	key := rsaKey(t)
	idp := startIdP(t, authtest.Key{KID: "gw", Public: key.Public()})
	up := StartUpstream(t)
	routes := fmt.Sprintf(`[{"id": "private", "name": "private", "auth_type": "jwt",
 "auth": {"use_header": true, "header_name": "Authorization"},
 "version_data": {"default": {"endpoints": [{"id": "secured", "path": "/private/secured", "method": "GET", "secured": true}]}},
 "proxy": {"target_url": "http://127.0.0.1", "port": %d}}]`, up.Port)
	st := StartStack(t, map[string]string{"PROXY_CONFIG_FILE": WriteRoutes(t, routes),
		"PROXY_ALLOW_LOCAL_TARGETS": "true", // the upstream is on loopback
		"JWT_JWKS_URL":              idp.URL(), "JWT_ISSUER": idpIssuer, "JWT_AUDIENCE": idpAudience}, nil)
	tok := idpToken{key: key, kid: "gw", jti: "gw-session"}.mint(t, "alice")
	h := http.Header(Get(t, st.Edge.URL+"/private/secured", http.Header{"Authorization": {"Bearer " + tok}}).Echo(t).Header)
	for k, want := range map[string]string{"X-Rig-User": "alice", "X-Rig-Session": "gw-session", "Authorization": "Bearer " + tok} {
		if got := h.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("upstream %s = %q, want %q", k, got, want)
		}
	}
	for name, bad := range map[string]string{
		"foreign audience": idpToken{key: key, kid: "gw", aud: []string{"billing"}}.mint(t, "alice"),
		"unknown kid":      idpToken{key: key, kid: "nope"}.mint(t, "alice"),
		"other key":        idpToken{key: rsaKey(t), kid: "gw"}.mint(t, "alice"),
	} {
		r := Get(t, st.Edge.URL+"/private/secured", http.Header{"Authorization": {"Bearer " + bad}})
		if r.Status != 401 || r.Header.Get("X-Upstream") != "" {
			t.Errorf("%s: %d %s; want the gateway's 401", name, r.Status, r.Body)
		}
	}
}

// TestJWKSStartup: an edge whose JWKS cannot be fetched at start, or with
// no key source at all, stops with one line saying so, and exit code 1.
func TestJWKSStartup(t *testing.T) {
	bad := startIdP(t)
	bad.Serve(http.StatusOK, []byte(`{"keys": [`))
	down := fmt.Sprintf("http://127.0.0.1:%d/jwks.json", FreePort(t))
	for name, c := range map[string]struct {
		env  map[string]string
		want string
	}{
		"JWKS down":     {map[string]string{"JWT_JWKS_URL": down}, "edge: JWT_JWKS_URL=" + down + ": "},
		"JWKS bad JSON": {map[string]string{"JWT_JWKS_URL": bad.URL()}, "edge: JWT_JWKS_URL=" + bad.URL() + ": failed to perform first HTTP request for JWK Set: failed to decode JWK Set response"},
		"no key":        {map[string]string{"JWT_SECRET_KEY": ""}, `edge: invalid JWT_SECRET_KEY="": expected a secret of at least 8 bytes, or public keys`},
	} {
		t.Run(name, func(t *testing.T) {
			env := EdgeEnv(FreePort(t), "nats://127.0.0.1:1")
			for k, v := range c.env {
				env[k] = v
			}
			p := StartProc(t, "edge", bin.edge, nil, env)
			if !p.Wait(20 * time.Second) {
				t.Fatal("edge still running")
			}
			if code := p.ExitCode(); code != 1 {
				t.Fatalf("exit code %d, want 1", code)
			}
			lines := strings.Split(strings.TrimSpace(p.Logs()), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, c.want) {
				t.Fatalf("last line %q; want it to start with %q", last, c.want)
			}
		})
	}
}
