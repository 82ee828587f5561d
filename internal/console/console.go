// Package console is the operator's console: a browser page, embedded in
// ingest, that lists who is online, kills sessions, sends test messages,
// edits routes and shows health, all through ingest's own /v1 API.
package console

import (
	"embed"
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
	files := http.StripPrefix(Prefix, http.FileServerFS(root))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "the console is read with GET", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path == Prefix || r.URL.Path == Prefix+"/" {
			http.ServeFileFS(w, r, root, "index.html")
			return
		}
		if !strings.HasPrefix(r.URL.Path, Prefix+"/") {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
}
