package proxy

import (
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/route"
)

// Identity headers tell the upstream who the edge verified, on a secured
// endpoint. The edge removes any a client sent, on every route, so the
// upstream can trust them whenever they are there.
const (
	HeaderUser    = "X-Rig-User"
	HeaderSession = "X-Rig-Session" // the token's jti
	HeaderRoles   = "X-Rig-Roles"   // comma-separated
)

// setIdentity removes the client's identity headers and, when the request
// was verified, pins the one verified token and says whose it is.
func setIdentity(c *fiber.Ctx, a *route.API, v *verified) (query string) {
	h := &c.Request().Header
	for _, name := range []string{HeaderUser, HeaderSession, HeaderRoles} {
		h.Del(name)
	}
	query = string(c.Context().URI().QueryString())
	if v == nil {
		return query
	}
	// Exactly one token goes upstream, the one verified: the other header
	// lines and query values that might hold one (a forged token next to a
	// valid one) are removed, not left for the upstream to pick from.
	if a.Auth.UseHeader {
		h.Del(a.Auth.HeaderName)
		if v.header != "" {
			h.Set(a.Auth.HeaderName, v.header)
		}
	}
	if a.Auth.UseQuery {
		query = pinQuery(query, a.Auth.QueryName, v)
	}
	h.Set(HeaderUser, v.session.User)
	if v.session.ID != "" {
		h.Set(HeaderSession, v.session.ID)
	}
	if len(v.session.Roles) > 0 {
		h.Set(HeaderRoles, strings.Join(v.session.Roles, ","))
	}
	return query
}

// pinQuery drops the query's name parameters, keeping the others as sent,
// and puts back the verified token if it came from there.
func pinQuery(query, name string, v *verified) string {
	var kept []string
	for _, p := range strings.Split(query, "&") {
		key, _, _ := strings.Cut(p, "=")
		if k, err := url.QueryUnescape(key); err == nil && k == name || key == name {
			continue
		}
		if p != "" {
			kept = append(kept, p)
		}
	}
	if v.header == "" {
		kept = append(kept, url.QueryEscape(name)+"="+url.QueryEscape(v.token))
	}
	return strings.Join(kept, "&")
}

// invalidHeaderName returns the first header name that is not an RFC 9110
// token, which an upstream might read differently from the edge.
func invalidHeaderName(h header) (string, bool) {
	for k := range h.All() {
		if !validName(k) {
			return string(k), false
		}
	}
	return "", true
}

func validName(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	for _, b := range k {
		if b >= 0x80 || !isTchar[b] {
			return false
		}
	}
	return true
}

// isTchar is RFC 9110's tchar.
var isTchar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return
}()
