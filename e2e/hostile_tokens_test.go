package e2e

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// signed is a token with these claims and extra header fields, signed
// with the test secret: shapes auth.Mint would never produce.
func signed(t testing.TB, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString([]byte(Secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestHostileTokenShapes: correctly signed tokens of weak shapes are
// refused with 401 on every transport and the gateway: a user claim that
// is there but no usable id (42, "") no longer lets "sub" name the user,
// a token without jti (whose session could never be blacklisted) is
// refused unless JWT_REQUIRE_JTI=false, and a crit header (extensions
// the edge does not implement) is refused.
func TestHostileTokenShapes(t *testing.T) {
	up := StartUpstream(t)
	routes := WriteRoutes(t, `[{"id": "private", "auth_type": "jwt",
 "auth": {"use_header": true, "header_name": "Authorization", "use_query": false, "query_name": ""},
 "version_data": {"default": {"endpoints": [{"id": "e", "path": "/private/{id}", "method": "GET"}]}},
 "proxy": {"target_url": "http://127.0.0.1", "port": `+strconv.Itoa(up.Port)+`}}]`)
	// A short long-poll timeout, so that a poll that is let in answers soon.
	st := StartStack(t, map[string]string{"PROXY_CONFIG_FILE": routes, "LONGPOLL_TIMEOUT": "300ms", "PROXY_ALLOW_LOCAL_TARGETS": "true"}, nil)
	exp := time.Now().Add(time.Hour).Unix()

	weak := []struct {
		name  string
		token string
	}{
		{`{"user":42,"sub":"bob"}`, signed(t, nil, jwt.MapClaims{"user": 42, "sub": "bob", "exp": exp, "jti": "w1"})},
		{`{"user":"","sub":"bob"}`, signed(t, nil, jwt.MapClaims{"user": "", "sub": "bob", "exp": exp, "jti": "w2"})},
		{`{"user":null,"sub":"bob"}`, signed(t, nil, jwt.MapClaims{"user": nil, "sub": "bob", "exp": exp, "jti": "w3"})},
		{"no jti", signed(t, nil, jwt.MapClaims{"user": "bob", "exp": exp})},
		{`"jti":""`, signed(t, nil, jwt.MapClaims{"user": "bob", "exp": exp, "jti": ""})},
		{`crit ["exp"]`, signed(t, map[string]any{"crit": []string{"exp"}, "exp": 1}, jwt.MapClaims{"user": "bob", "exp": exp, "jti": "w4"})},
		{`crit ["b64"]`, signed(t, map[string]any{"crit": []string{"b64"}, "b64": false}, jwt.MapClaims{"user": "bob", "exp": exp, "jti": "w5"})},
	}
	good := signed(t, nil, jwt.MapClaims{"user": "bob", "exp": exp, "jti": "g1"})
	check := func(t *testing.T, edgeURL, name, token string, want int) {
		t.Helper()
		bearer := http.Header{"Authorization": {"Bearer " + token}}
		got := map[string]int{
			"sse":        peek(t, edgeURL+"/socket/sse?token="+url.QueryEscape(token), nil),
			"sse bearer": peek(t, edgeURL+"/socket/sse", bearer),
			"longpoll":   peek(t, edgeURL+"/socket/longpoll", bearer),
			"gateway":    Get(t, edgeURL+"/private/1", bearer).Status,
		}
		w, r := DialWS(t, wsURL(edgeURL, plainQuery(token)))
		got["websocket"] = r.Status
		if w != nil {
			w.Conn.Close()
		}
		for transport, status := range got {
			wantHere := want
			if want == 200 && transport == "websocket" {
				wantHere = 101
			}
			if status != wantHere {
				t.Errorf("%s on %s: %d, want %d", name, transport, status, wantHere)
			}
		}
	}
	for _, c := range weak {
		check(t, st.Edge.URL, c.name, c.token, 401)
	}
	check(t, st.Edge.URL, "a good token", good, 200)
	r := Do(t, "GET", st.Edge.URL+"/socket/sse?token="+weak[0].token, "", nil)
	if msg := r.ErrorMessage(t); r.Status != 401 || !strings.Contains(msg, `"user"`) {
		t.Errorf(`{"user":42}: %d %q, want 401 naming the claim`, r.Status, msg)
	}

	t.Run("JWT_REQUIRE_JTI=false", func(t *testing.T) {
		env := EdgeEnv(FreePort(t), st.NATSURL)
		env["JWT_REQUIRE_JTI"] = "false"
		env["PROXY_CONFIG_FILE"] = routes
		env["PROXY_ALLOW_LOCAL_TARGETS"] = "true"
		env["LONGPOLL_TIMEOUT"] = "300ms"
		lax := StartEdge(t, env)
		check(t, lax.URL, "no jti", weak[3].token, 200)
		check(t, lax.URL, `{"user":42,"sub":"bob"}`, weak[0].token, 401)
	})
}
