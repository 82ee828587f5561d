package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/fasthttp/websocket"

	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/internal/tlsfile/tlsfiletest"
)

// tlsStack is a single-node stack whose edge serves TLS on its public port
// (Edge.URL is https://), with a certificate from a CA the test made.
type tlsStack struct {
	*Stack
	CA                *tlsfiletest.CA
	CertFile, KeyFile string
	// Client trusts the test CA and nothing else.
	Client *http.Client
}

// startTLSStack starts the stack of StartStack with TLS_CERT_FILE and
// TLS_KEY_FILE set to a certificate for cn; edgeEnv adds to the edge's
// environment.
func startTLSStack(t *testing.T, cn string, edgeEnv map[string]string) *tlsStack {
	t.Helper()
	ca := tlsfiletest.NewCA(t, "RIG-Go e2e CA")
	leaf := ca.Issue(t, cn)
	dir := t.TempDir()
	s := &tlsStack{CA: ca, CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	writeFile(t, s.CertFile, leaf.CertPEM)
	writeFile(t, s.KeyFile, leaf.KeyPEM)
	s.Client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	t.Cleanup(s.Client.CloseIdleConnections)

	natsPort := FreePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	ee := EdgeEnv(FreePort(t), "")
	delete(ee, "NATS_URL")
	ee["NATS_EMBEDDED"] = "true"
	ee["NATS_LISTEN"] = fmt.Sprintf("127.0.0.1:%d", natsPort)
	ee["NATS_STORE_DIR"] = t.TempDir()
	ee["TLS_CERT_FILE"], ee["TLS_KEY_FILE"] = s.CertFile, s.KeyFile
	ee["TLS_RELOAD_INTERVAL"] = "200ms"
	for k, v := range edgeEnv {
		ee[k] = v
	}
	port, _ := strconv.Atoi(ee["INBOUND_PORT"])
	edge := &Server{Port: port, URL: fmt.Sprintf("https://127.0.0.1:%d", port), OpsURL: "http://127.0.0.1:" + ee["METRICS_PORT"]}
	edge.Proc = StartProc(t, "edge:"+ee["INBOUND_PORT"], bin.edge, nil, ee)
	// Ready on the public port, through TLS: the operations port is up
	// before the public one opens.
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		if !edge.Running() {
			t.Fatalf("edge exited: %s", edge.Logs())
		}
		if st := s.status(edge.URL + "/health/ready"); st != 200 {
			return fmt.Errorf("edge not ready over TLS: %d", st)
		}
		return nil
	})
	ingest := StartIngest(t, IngestEnv(FreePort(t), natsURL))
	s.Stack = &Stack{Edge: edge, Ingest: ingest, NATSURL: natsURL}
	return s
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	// Written beside and renamed, as a renewal should: the edge never
	// reads half a file of this test's.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// status is the status of a GET through s.Client, 0 on failure.
func (s *tlsStack) status(u string) int {
	resp, err := s.Client.Get(u)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// get is a GET through s.Client.
func (s *tlsStack) get(t testing.TB, u string, header http.Header) Response {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// sse opens an SSE stream over TLS and returns it once connected, with the
// certificate the edge presented.
func (s *tlsStack) sse(t testing.TB, token string) (*SSE, *x509.Certificate) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.Edge.URL+"/socket/sse?token="+token, nil)
	req.Header.Set("Accept", "text/event-stream")
	// Its own connection, so that it is not one the client already holds.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CA.Pool()}}}
	resp, err := c.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("SSE over TLS: %v", err)
	}
	if resp.StatusCode != 200 {
		cancel()
		t.Fatalf("SSE over TLS: %d", resp.StatusCode)
	}
	st := &SSE{Resp: resp, Events: make(chan SSEEvent, 1000), cancel: cancel, done: make(chan struct{})}
	go st.read()
	t.Cleanup(st.Close)
	if ev := st.Next(t, 5*time.Second); ev.Event != "connected" {
		t.Fatalf("first event %+v, want connected", ev)
	}
	return st, resp.TLS.PeerCertificates[0]
}

// ws opens a WebSocket over TLS (wss://).
func (s *tlsStack) ws(t testing.TB, q url.Values) *WS {
	t.Helper()
	u := strings.Replace(s.Edge.URL, "https://", "wss://", 1) + "/socket/websocket?" + q.Encode()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: &tls.Config{RootCAs: s.CA.Pool()}}
	c, resp, err := d.Dial(u, nil)
	if err != nil {
		if resp != nil {
			t.Fatalf("dial %s: %v: %d %s", u, err, resp.StatusCode, readAll(resp))
		}
		t.Fatalf("dial %s: %v", u, err)
	}
	w := &WS{Conn: c, Frames: make(chan []byte, 1000), pings: make(chan struct{}, 1000), done: make(chan struct{})}
	go w.read()
	t.Cleanup(func() { c.Close() })
	return w
}

// handshake makes a new TLS connection to the edge and returns what it
// negotiated; config's RootCAs default to the test CA.
func (s *tlsStack) handshake(config *tls.Config) (tls.ConnectionState, error) {
	if config == nil {
		config = &tls.Config{}
	}
	if config.RootCAs == nil {
		config.RootCAs = s.CA.Pool()
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", s.Edge.Port), config)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

// servedSerial is the serial number of the certificate new handshakes get.
func (s *tlsStack) servedSerial(t testing.TB) *big.Int {
	t.Helper()
	cs, err := s.handshake(nil)
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	return cs.PeerCertificates[0].SerialNumber
}

// TestEdgeTLSServesEveryTransport: with TLS_CERT_FILE and TLS_KEY_FILE,
// SSE, a plain WebSocket, a Phoenix socket, a long-poll and the API
// gateway all work over TLS, with HTTP/1.1 and TLS 1.2 or later only.
func TestEdgeTLSServesEveryTransport(t *testing.T) {
	up := StartUpstream(t)
	s := startTLSStack(t, "edge-tls", map[string]string{
		"PROXY_CONFIG_FILE": WriteRoutes(t, gatewayRoutes(up, FreePort(t))),
		// The test upstream listens on loopback, which routes may not target by default.
		"PROXY_ALLOW_LOCAL_TARGETS": "true",
		"PROXY_USE_ENV_ALLOWLIST":   "PRIVATE_HOST",
		"PRIVATE_HOST":              "http://127.0.0.1",
		"TRUSTED_PROXIES":           "none", // the test client is not a proxy whose X-Forwarded-Proto counts
	})
	if !strings.Contains(s.Edge.Logs(), "public port serves TLS only") || !strings.Contains(s.Edge.Logs(), "https://localhost:") {
		t.Errorf("no start line saying the public port serves TLS:\n%s", s.Edge.Logs())
	}

	sse, cert := s.sse(t, Token(t, "alice"))
	if cert.Subject.CommonName != "edge-tls" {
		t.Fatalf("edge presented %q, want edge-tls", cert.Subject.CommonName)
	}
	ws := s.ws(t, plainQuery(Token(t, "alice")))
	if ev := ws.Next(t, 5*time.Second); ev.Event != "connected" {
		t.Fatalf("first WebSocket event %+v, want connected", ev)
	}
	phx := &phx{s.ws(t, phxQuery(Token(t, "alice"), "2.0.0")), "2.0.0"}
	phx.join(t, "1", "user:alice", map[string]any{})

	id := Post(t, s.Ingest.URL, map[string]any{"user": "alice", "text": "over TLS"})
	if ev := sse.NextMessage(t, 5*time.Second); ev.ID != id || !strings.Contains(ev.Data, "over TLS") {
		t.Fatalf("SSE over TLS got %+v, want message %s", ev, id)
	}
	if ev := ws.Next(t, 5*time.Second); ev.Event != "message" || ev.ID != id {
		t.Fatalf("WebSocket over TLS got %+v, want message %s", ev, id)
	}
	for {
		m := phx.next(t)
		if m.Event == "message" {
			if !strings.Contains(string(m.Payload), "over TLS") {
				t.Fatalf("Phoenix over TLS got %s", m.Payload)
			}
			break
		}
	}
	r := s.get(t, pollURL(s.Edge.URL, Token(t, "alice"), "seq:0"), nil)
	var lp LongPoll
	r.JSON(t, &lp)
	if r.Status != 200 || len(lp.Events) != 1 || lp.Events[0].ID != id {
		t.Fatalf("long-poll over TLS: %d %s, want the message %s", r.Status, r.Body, id)
	}

	// The gateway tells the upstream the client came over TLS, whatever
	// the client claims.
	e := s.get(t, s.Edge.URL+"/echo/x", http.Header{"X-Forwarded-Proto": {"http"}}).Echo(t)
	if got := e.Header["X-Forwarded-Proto"]; len(got) != 1 || got[0] != "https" {
		t.Errorf("upstream got X-Forwarded-Proto %v, want [https]", got)
	}
	if got := strings.Join(e.Header["Forwarded"], ","); !strings.Contains(got, "proto=https") {
		t.Errorf("upstream got Forwarded %q, want proto=https", got)
	}

	cs, err := s.handshake(&tls.Config{NextProtos: []string{"h2", "http/1.1"}})
	if err != nil || cs.NegotiatedProtocol != "http/1.1" || cs.Version < tls.VersionTLS12 {
		t.Fatalf("handshake offering h2 and http/1.1: %v, protocol %q, version %x; want http/1.1, TLS 1.2+", err, cs.NegotiatedProtocol, cs.Version)
	}
	if _, err := s.handshake(&tls.Config{NextProtos: []string{"h2"}}); err == nil {
		t.Error("a client offering only h2 was accepted; the edge speaks HTTP/1.1 only")
	}
	if _, err := s.handshake(&tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("a TLS 1.1 client was accepted")
	}
	// The operations port stays plain HTTP, for probes.
	if got := status(s.Edge.OpsURL + "/health/ready"); got != 200 {
		t.Errorf("plain GET of the operations port's /health/ready: %d, want 200", got)
	}
}

// TestEdgeTLSRefusesUntrustingClients: a client that does not trust the CA
// fails its handshake, and the edge goes on serving.
func TestEdgeTLSRefusesUntrustingClients(t *testing.T) {
	s := startTLSStack(t, "edge-tls", nil)
	_, err := http.Get(s.Edge.URL + "/health")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("GET with the system roots: %v, want an unknown authority error", err)
	}
	other := tlsfiletest.NewCA(t, "another CA")
	if _, err := s.handshake(&tls.Config{RootCAs: other.Pool()}); !errors.As(err, &unknown) {
		t.Fatalf("handshake trusting another CA: %v, want an unknown authority error", err)
	}
	if got := s.status(s.Edge.URL + "/health"); got != 200 {
		t.Fatalf("after refused handshakes, GET /health: %d, want 200", got)
	}
}

// TestEdgeTLSReloadsCertificate: a renewed pair written at runtime is
// served to new handshakes, while a stream opened before keeps working; a
// mismatched pair written later is refused with one error line, and the
// renewed one stays.
func TestEdgeTLSReloadsCertificate(t *testing.T) {
	s := startTLSStack(t, "edge-tls-old", nil)
	before, oldCert := s.sse(t, Token(t, "alice"))
	oldSerial := oldCert.SerialNumber
	// A client that resumes TLS sessions, as browsers do: a new connection
	// for each request, resumed from the ticket of the one before.
	resumer := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: s.CA.Pool(), ClientSessionCache: tls.NewLRUClientSessionCache(8)}}}
	resume := func() *tls.ConnectionState {
		t.Helper()
		resp, err := resumer.Get(s.Edge.URL + "/health")
		if err != nil {
			t.Fatalf("GET /health with a session cache: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body) // the ticket comes after the handshake
		resp.Body.Close()
		return resp.TLS
	}
	resume()
	if cs := resume(); !cs.DidResume || cs.PeerCertificates[0].SerialNumber.Cmp(oldSerial) != 0 {
		t.Fatalf("a second connection with the session cache: resumed %v, serial %x; want the old %x resumed", cs.DidResume, cs.PeerCertificates[0].SerialNumber, oldSerial)
	}

	renewed := s.CA.Issue(t, "edge-tls-renewed")
	writeFile(t, s.CertFile, renewed.CertPEM)
	writeFile(t, s.KeyFile, renewed.KeyPEM)
	check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
		if got := s.servedSerial(t); got.Cmp(renewed.Cert.SerialNumber) != 0 {
			return fmt.Errorf("new handshakes get serial %x, want the renewed %x (old %x)", got, renewed.Cert.SerialNumber, oldSerial)
		}
		return nil
	})
	// A session from before the reload is not resumed: the client gets
	// the renewed certificate; the session from that one resumes.
	if cs := resume(); cs.DidResume || cs.PeerCertificates[0].SerialNumber.Cmp(renewed.Cert.SerialNumber) != 0 {
		t.Fatalf("after the reload, the session cache's client: resumed %v, serial %x; want a full handshake with the renewed %x", cs.DidResume, cs.PeerCertificates[0].SerialNumber, renewed.Cert.SerialNumber)
	}
	if cs := resume(); !cs.DidResume {
		t.Fatal("a session made under the renewed certificate was not resumed")
	}
	if !strings.Contains(s.Edge.Logs(), "TLS certificate reloaded") || !strings.Contains(s.Edge.Logs(), "subject=edge-tls-renewed") {
		t.Errorf("no log line for the reload:\n%s", s.Edge.Logs())
	}
	if got := metric(t, s.Edge, `rig_edge_tls_reloads_total{result="reloaded"}`); got != 1 {
		t.Errorf(`rig_edge_tls_reloads_total{result="reloaded"} = %v, want 1`, got)
	}
	if got := metric(t, s.Edge, "rig_edge_tls_certificate_expiry_timestamp_seconds"); got != float64(renewed.Cert.NotAfter.Unix()) {
		t.Errorf("rig_edge_tls_certificate_expiry_timestamp_seconds = %v, want %d", got, renewed.Cert.NotAfter.Unix())
	}

	// The stream made before the reload still gets messages, and a new
	// one (with the new certificate) too.
	after, cert := s.sse(t, Token(t, "alice"))
	if cert.Subject.CommonName != "edge-tls-renewed" {
		t.Fatalf("a new stream got %q, want edge-tls-renewed", cert.Subject.CommonName)
	}
	id := Post(t, s.Ingest.URL, map[string]any{"user": "alice", "n": 1})
	for name, st := range map[string]*SSE{"before the reload": before, "after the reload": after} {
		if ev := st.NextMessage(t, 5*time.Second); ev.ID != id {
			t.Fatalf("stream opened %s got %+v, want %s", name, ev, id)
		}
	}

	// A key that is not the certificate's: refused, one error line, the
	// renewed pair still served.
	other := s.CA.Issue(t, "edge-tls-other")
	writeFile(t, s.KeyFile, other.KeyPEM)
	check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
		if n := strings.Count(s.Edge.Logs(), "cannot be used; keeping the previous certificate"); n != 1 {
			return fmt.Errorf("%d error lines for the mismatched pair, want 1", n)
		}
		return nil
	})
	if got := metric(t, s.Edge, `rig_edge_tls_reloads_total{result="refused"}`); got != 1 {
		t.Errorf(`rig_edge_tls_reloads_total{result="refused"} = %v, want 1`, got)
	}
	if got := s.servedSerial(t); got.Cmp(renewed.Cert.SerialNumber) != 0 {
		t.Fatalf("after a mismatched key, new handshakes get serial %x, want the renewed %x", got, renewed.Cert.SerialNumber)
	}
	// Another broken key: its own error line shows the polls went on, and
	// that the first broken pair was not logged again meanwhile.
	writeFile(t, s.KeyFile, s.CA.Issue(t, "edge-tls-third").KeyPEM)
	check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
		if n := strings.Count(s.Edge.Logs(), "cannot be used; keeping the previous certificate"); n != 2 {
			return fmt.Errorf("%d error lines after two broken pairs, want 2", n)
		}
		return nil
	})
	if got := s.servedSerial(t); got.Cmp(renewed.Cert.SerialNumber) != 0 {
		t.Fatalf("after two mismatched keys, new handshakes get serial %x, want the renewed %x", got, renewed.Cert.SerialNumber)
	}
	if got := metric(t, s.Edge, `rig_edge_tls_reloads_total{result="reloaded"}`); got != 1 {
		t.Errorf(`after broken pairs, rig_edge_tls_reloads_total{result="reloaded"} = %v, want 1`, got)
	}
	id = Post(t, s.Ingest.URL, map[string]any{"user": "alice", "n": 2})
	if ev := before.NextMessage(t, 5*time.Second); ev.ID != id {
		t.Fatalf("stream opened before both changes got %+v, want %s", ev, id)
	}

	// Draining over TLS: the old stream is told to reconnect and ends
	// cleanly, and the edge exits 0.
	s.Edge.Signal(syscall.SIGTERM)
	if ev := before.Next(t, 5*time.Second); ev.Event != "reconnect" {
		t.Fatalf("on SIGTERM the stream got %+v, want reconnect", ev)
	}
	if !before.Ended(5 * time.Second) {
		t.Fatal("the stream did not end after its reconnect event")
	}
	if !s.Edge.Wait(15 * time.Second) {
		t.Fatal("the edge did not exit within 15s of SIGTERM")
	}
	if code := s.Edge.ExitCode(); code != 0 {
		t.Fatalf("the edge exited with %d after SIGTERM, want 0", code)
	}
}

// TestEdgeTLSBadConfigurationStopsTheEdge: one file without the other, a
// file that cannot be read, a file that is not PEM, or a key that is not
// the certificate's: the edge exits at start with one line naming the
// setting.
func TestEdgeTLSBadConfigurationStopsTheEdge(t *testing.T) {
	ca := tlsfiletest.NewCA(t, "RIG-Go e2e CA")
	a, b := ca.Issue(t, "a"), ca.Issue(t, "b")
	dir := t.TempDir()
	file := func(name string, content []byte) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, content)
		return p
	}
	aCert, aKey, bKey := file("a.crt", a.CertPEM), file("a.key", a.KeyPEM), file("b.key", b.KeyPEM)
	missing := filepath.Join(dir, "missing.pem")
	for _, c := range []struct {
		name       string
		cert, key  string
		want, also string
	}{
		{"certificate without key", aCert, "", "invalid TLS_KEY_FILE=\"\"", "TLS needs both"},
		{"key without certificate", "", aKey, "invalid TLS_CERT_FILE=\"\"", "TLS needs both"},
		{"missing certificate", missing, aKey, "invalid TLS_CERT_FILE=" + strconv.Quote(missing), "no such file"},
		{"missing key", aCert, missing, "invalid TLS_KEY_FILE=" + strconv.Quote(missing), "no such file"},
		{"key as certificate", aKey, aKey, "invalid TLS_CERT_FILE=" + strconv.Quote(aKey), "no PEM CERTIFICATE block"},
		{"mismatched key", aCert, bKey, "invalid TLS_KEY_FILE=" + strconv.Quote(bKey), "private key does not match public key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := EdgeEnv(FreePort(t), "nats://127.0.0.1:1")
			env["TLS_CERT_FILE"], env["TLS_KEY_FILE"] = c.cert, c.key
			p := StartProc(t, "edge", bin.edge, nil, env)
			if !p.Wait(10 * time.Second) {
				t.Fatal("the edge did not exit")
			}
			if code := p.ExitCode(); code == 0 {
				t.Fatal("the edge exited with 0")
			}
			out := strings.TrimSpace(p.Logs())
			if strings.Count(out, "\n") != 0 || !strings.HasPrefix(out, "edge: "+c.want) || !strings.Contains(out, c.also) {
				t.Fatalf("output %q, want one line starting %q and saying %q", out, "edge: "+c.want, c.also)
			}
		})
	}
}

// TestEdgeTLSHostileClients: plain HTTP to the TLS port gets net/http's
// 400 and a closed connection; handshakes that never finish are closed
// after HEADER_TIMEOUT; MAX_CONNECTIONS_PER_IP counts connections before
// their handshake; none of it leaks a connection or stops the edge.
func TestEdgeTLSHostileClients(t *testing.T) {
	s := startTLSStack(t, "edge-tls", map[string]string{
		"HEADER_TIMEOUT":         "1s",
		"MAX_CONNECTIONS_PER_IP": "20",
		"TRUSTED_PROXIES":        "none", // the test's own address is limited
	})
	addr := fmt.Sprintf("127.0.0.1:%d", s.Edge.Port)
	s.Client.CloseIdleConnections()
	goroutines := metric(t, s.Edge, "go_goroutines")

	t.Run("plain HTTP", func(t *testing.T) {
		for i := range 50 {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET /health?i=%d HTTP/1.1\r\nHost: edge\r\nX-Filler: %s\r\n\r\n", i, strings.Repeat("x", 2000))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("plain request %d: %v", i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			c.Close()
			var e struct{ Error string }
			if resp.StatusCode != 400 || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, "HTTP request to an HTTPS server") {
				t.Fatalf("plain request %d: %d %s, want 400 and a JSON error", i, resp.StatusCode, body)
			}
		}
	})

	t.Run("handshake never finished", func(t *testing.T) {
		// One sends nothing, one half a ClientHello, one a record header
		// announcing more than it sends.
		for _, first := range [][]byte{nil, {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00}, {0x16, 0x03, 0x01, 0x40, 0x00}} {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			c.Write(first)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.Copy(io.Discard, c)
			took := time.Since(start)
			c.Close()
			if err != nil || took < 900*time.Millisecond || took > 6*time.Second {
				t.Fatalf("stalled handshake %x: closed after %s (%v), want about HEADER_TIMEOUT=1s", first, took, err)
			}
		}
	})

	t.Run("per-IP cap counts TLS connections", func(t *testing.T) {
		s.Client.CloseIdleConnections() // its keep-alive connections count too
		check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
			if n := metric(t, s.Edge, "rig_edge_tcp_connections"); n != 0 {
				return fmt.Errorf("%v connections still open", n)
			}
			return nil
		})
		// 20 connections that never start their handshake hold the cap...
		var idle []net.Conn
		for range 20 {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			idle = append(idle, c)
		}
		defer func() {
			for _, c := range idle {
				c.Close()
			}
		}()
		check.For(t, 5*time.Second, 20*time.Millisecond, func() error {
			if n := metric(t, s.Edge, "rig_edge_tcp_connections"); n != 20 {
				return fmt.Errorf("%v connections counted, want 20", n)
			}
			return nil
		})
		// ...so a 21st is closed before its handshake.
		if _, err := s.handshake(nil); err == nil {
			t.Fatal("a TLS connection past MAX_CONNECTIONS_PER_IP was served")
		}
		if got := metric(t, s.Edge, `rig_edge_connections_refused_total{reason="ip"}`); got < 1 {
			t.Fatalf(`rig_edge_connections_refused_total{reason="ip"} = %v, want at least 1`, got)
		}
		// HEADER_TIMEOUT closes the idle ones, and their slots come back.
		check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
			if _, err := s.handshake(nil); err != nil {
				return fmt.Errorf("after the idle connections' timeout: %v", err)
			}
			return nil
		})
	})

	t.Run("many at once", func(t *testing.T) {
		// Under the per-IP cap: half send plain HTTP, half start a
		// handshake and stall.
		var conns []net.Conn
		for i := range 18 {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			if i%2 == 0 {
				fmt.Fprintf(c, "POST /socket/sse HTTP/1.1\r\nHost: edge\r\nContent-Length: 100000\r\n\r\n%s", strings.Repeat("x", 30000))
			} else {
				c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
			}
		}
		for _, c := range conns {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.Copy(io.Discard, c) // until the edge closes it
			c.Close()
		}
	})

	// Nothing leaked: every connection above is gone, their goroutines
	// too (fasthttp keeps an idle worker goroutine for 10s, and sweeps
	// them every 10s), and the edge serves.
	s.Client.CloseIdleConnections()
	check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
		if n := metric(t, s.Edge, "rig_edge_tcp_connections"); n != 0 {
			return fmt.Errorf("%v connections still counted", n)
		}
		if n := metric(t, s.Edge, "go_goroutines"); n > goroutines+5 {
			return fmt.Errorf("%v goroutines, %v before the hostile clients", n, goroutines)
		}
		return nil
	})
	sse, _ := s.sse(t, Token(t, "bob"))
	id := Post(t, s.Ingest.URL, map[string]any{"user": "bob", "text": "still here"})
	if ev := sse.NextMessage(t, 5*time.Second); ev.ID != id {
		t.Fatalf("after the hostile clients, SSE got %+v, want %s", ev, id)
	}
}

// TestEdgeTLSBrowser: Debian's chromium, trusting only the edge's key,
// gets messages through its own EventSource over https:// and its own
// WebSocket over wss://.
func TestEdgeTLSBrowser(t *testing.T) {
	s := startTLSStack(t, "edge-tls", nil)
	cs, err := s.handshake(nil)
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(cs.PeerCertificates[0].RawSubjectPublicKeyInfo)
	// Trust the edge's key, and no other certificate error.
	ctx := newBrowser(t, chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])))

	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, browserPage)
	}))
	defer page.Close()

	u := page.URL + "/?" + url.Values{"edge": {s.Edge.URL}, "token": {Token(t, "alice")}}.Encode()
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("open the page in chromium: %v", err)
	}
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		if !evaluate[bool](t, ctx, `window.opens.sse > 0 && window.opens.ws > 0`) {
			return fmt.Errorf("the page did not connect over TLS")
		}
		return nil
	})
	var posted []string
	for i := range 3 {
		posted = append(posted, Post(t, s.Ingest.URL, map[string]any{"user": "alice", "n": i}))
	}
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		sse := evaluate[[]string](t, ctx, `window.sse`)
		ws := evaluate[[]string](t, ctx, `window.ws`)
		if !slices.Equal(sse, posted) || !slices.Equal(ws, posted) {
			return fmt.Errorf("the browser got %v (EventSource) and %v (WebSocket), want %v", sse, ws, posted)
		}
		return nil
	})
	if n := evaluate[int](t, ctx, `window.opens.sse + window.opens.ws`); n != 2 {
		t.Errorf("the page opened %d connections, want 2 (no reconnects)", n)
	}
}
