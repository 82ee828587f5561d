package console

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, method, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	resp := rec.Result()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestHandlerServesFiles: the page at /admin and /admin/, its script and
// style with their types, each with the strict headers.
func TestHandlerServesFiles(t *testing.T) {
	for _, c := range []struct{ path, ctype, has string }{
		{"/admin", "text/html", `<script type="module" src="/admin/console.js">`},
		{"/admin/", "text/html", `id="login-form"`},
		{"/admin/console.js", "javascript", "sessionStorage"},
		{"/admin/console.css", "text/css", ".scroll"},
	} {
		resp, body := get(t, "GET", c.path)
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), c.ctype) || !strings.Contains(body, c.has) {
			t.Errorf("GET %s: %d %s, body has %q: %v", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.has, strings.Contains(body, c.has))
		}
		h := resp.Header
		if h.Get("Content-Security-Policy") != csp || h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: headers %v", c.path, h)
		}
	}
	if !strings.Contains(csp, "script-src 'self';") || strings.Contains(csp, "unsafe") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q is not strict", csp)
	}
}

// TestHandlerRefuses: nothing but the embedded files, read with GET.
func TestHandlerRefuses(t *testing.T) {
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/admin/nothing.js", 404},
		{"GET", "/admin/index.html/", 404},
		{"GET", "/admin/static", 404},
		{"GET", "/admin/./console.js", 404},
		{"GET", "/adminx", 404},
		{"GET", "/admin/../console.go", 404},
		{"GET", "/admin/%2e%2e/console.go", 404},
		{"POST", "/admin/", 405},
		{"DELETE", "/admin/console.js", 405},
	} {
		if resp, body := get(t, c.method, c.path); resp.StatusCode != c.status || !strings.HasPrefix(body, `{"error":"the console`) {
			t.Errorf("%s %s: %d %.100s, want %d", c.method, c.path, resp.StatusCode, body, c.status)
		}
	}
}

// TestVendoredUPlot: the chart library is served from the embed (no CDN:
// the CSP allows only 'self') and is the npm package's files, byte for
// byte, as vendor/uplot/README.md names them.
func TestVendoredUPlot(t *testing.T) {
	readme, err := static.ReadFile("static/vendor/uplot/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"uPlot.iife.min.js", "uPlot.min.css"} {
		b, err := static.ReadFile("static/vendor/uplot/" + name)
		if err != nil {
			t.Fatal(err)
		}
		sum := fmt.Sprintf("%x", sha256.Sum256(b))
		if !strings.Contains(string(readme), "`"+name+"` (package `dist/`), sha256 `"+sum+"`") {
			t.Errorf("%s has sha256 %s, not the one README.md names", name, sum)
		}
	}
	for _, c := range []struct{ path, ctype, has string }{
		{"/admin/vendor/uplot/uPlot.iife.min.js", "javascript", "uPlot"},
		{"/admin/vendor/uplot/uPlot.min.css", "text/css", ".uplot"},
		{"/admin/charts.js", "javascript", "uPlot"},
		{"/admin/", "text/html", `<script src="/admin/vendor/uplot/uPlot.iife.min.js" defer></script>`},
	} {
		resp, body := get(t, "GET", c.path)
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), c.ctype) || !strings.Contains(body, c.has) {
			t.Errorf("GET %s: %d %s, body has %q: %v", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.has, strings.Contains(body, c.has))
		}
	}
}
