package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Upstream is a real back-end behind the API gateway: net/http on a free
// port. Most paths echo the request as JSON; /stream and /slow are driven
// by the test through channels.
type Upstream struct {
	URL  string
	Port int
	// StreamNext lets /stream write its next piece; StreamWrote says a
	// piece was written (and flushed).
	StreamNext  chan struct{}
	StreamWrote chan int
	stop        chan struct{}
}

// Echo is what the upstream saw, as it answers it.
type Echo struct {
	Method   string              `json:"method"`
	Path     string              `json:"path"`
	RawQuery string              `json:"raw_query"`
	Header   map[string][]string `json:"header"`
	Trailer  map[string][]string `json:"trailer,omitempty"`
	Body     string              `json:"body"`
}

// StartUpstream serves on a free port until the test ends.
func StartUpstream(t testing.TB) *Upstream {
	t.Helper()
	port := FreePort(t)
	u := &Upstream{
		URL: fmt.Sprintf("http://127.0.0.1:%d", port), Port: port,
		StreamNext: make(chan struct{}), StreamWrote: make(chan int, 16), stop: make(chan struct{}),
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(u.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() {
		close(u.stop)
		srv.Close()
	})
	return u
}

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/stream":
		w.Header().Set("Content-Type", "text/plain")
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(w, "piece %d\n", i)
			w.(http.Flusher).Flush()
			u.StreamWrote <- i
			if i < 3 {
				select {
				case <-u.StreamNext:
				case <-u.stop:
					return
				}
			}
		}
		return
	case "/slow":
		select {
		case <-u.stop:
		case <-r.Context().Done():
		}
		return
	}
	body, _ := io.ReadAll(r.Body)
	e := Echo{Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, Header: r.Header, Trailer: r.Trailer, Body: string(body)}
	if r.Host != "" {
		e.Header["Host"] = []string{r.Host}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Upstream", "echo")
	// Hop-by-hop headers the gateway must not pass on.
	w.Header().Set("Connection", "X-Upstream-Hop")
	w.Header().Set("X-Upstream-Hop", "1")
	w.Header().Set("Keep-Alive", "timeout=30")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		json.NewEncoder(w).Encode(e)
	}
}

// WriteRoutes writes a route file and returns its path.
func WriteRoutes(t testing.TB, routes string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "routes.json")
	if err := os.WriteFile(p, []byte(routes), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// GatewayMessage returns the "message" field of one of the gateway's own
// answers (RIG's shape), failing the test if there is none.
func (r Response) GatewayMessage(t testing.TB) string {
	t.Helper()
	var m struct {
		Message string `json:"message"`
	}
	r.JSON(t, &m)
	if m.Message == "" {
		t.Fatalf("body %q has no \"message\" field", r.Body)
	}
	return m.Message
}

// Echo decodes what the upstream saw, failing the test unless the answer
// is the upstream's 200.
func (r Response) Echo(t testing.TB) Echo {
	t.Helper()
	if r.Status != 200 || r.Header.Get("X-Upstream") != "echo" {
		t.Fatalf("want the upstream's answer, got %d %v %s", r.Status, r.Header, r.Body)
	}
	var e Echo
	r.JSON(t, &e)
	return e
}

// Get is a GET without a body.
func Get(t testing.TB, url string, header ...http.Header) Response {
	t.Helper()
	return Do(t, "GET", url, "", nil, header...)
}

// status answers the status of GET url, or 0 when the request fails.
func status(url string) int { return statusWithin(url, 2*time.Second) }

// statusWithin is status with a request timeout.
func statusWithin(url string, timeout time.Duration) int {
	c := http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
