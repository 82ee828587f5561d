// Package console is the operator's console: a browser page, embedded in
// ingest, that lists who is online, kills sessions, sends test messages,
// edits routes and shows health, all through ingest's own /v1 API.
package console

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
)

// Prefix is where ingest serves the console.
const Prefix = "/admin"

//go:embed static
var static embed.FS

// csp allows nothing but the console's own files and calls to its own
// origin: no inline script or style (an injected string cannot run), no
// framing, no form posting elsewhere. The page holds a bearer token that
// can kill any session, so it must not run anyone else's code.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the console's page at Prefix and Prefix+"/" and its
// files under Prefix+"/". It serves static files only: the data comes
// from /v1/*, with the token the operator types in, so the page itself
// needs none.
func Handler() http.Handler {
	root, _ := fs.Sub(static, "static") // "static" is embedded above
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			refuse(w, http.StatusMethodNotAllowed, fmt.Sprintf("the console is read with GET, not %s", r.Method))
			return
		}
		name := "index.html"
		if p := r.URL.Path; p != Prefix && p != Prefix+"/" {
			name = strings.TrimPrefix(p, Prefix+"/")
			if st, err := fs.Stat(root, name); name == p || !fs.ValidPath(name) || err != nil || st.IsDir() {
				refuse(w, http.StatusNotFound, fmt.Sprintf("the console has no file %q", p))
				return
			}
		}
		// ServeFileFS, not FileServer: only the files themselves, no
		// directory listing or redirect.
		http.ServeFileFS(w, r, root, name)
	})
}

// refuse answers with ingest's JSON error shape.
func refuse(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
