package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestREADMENginxHTTP2 runs the README's HTTPS server block for nginx, as
// it is written there, in front of an edge: SSE works over HTTP/2, two
// streams share one connection, and on an nginx older than 1.25.1 (Debian
// 12's) the `http2 on;` spelling the README warns about is refused.
func TestREADMENginxHTTP2(t *testing.T) {
	nginx := NginxPath(t)
	block := readmeNginxBlock(t)
	st := StartStack(t, nil, nil)

	dir := nginxDir(t, "rig-nginx-h2-")
	pool := writeSelfSigned(t, dir)
	conf := func(port int, server string) string {
		server = strings.NewReplacer(
			"listen 443 ", fmt.Sprintf("listen 127.0.0.1:%d ", port),
			"/etc/nginx/tls/", dir+"/",
		).Replace(server)
		return fmt.Sprintf(`worker_processes 1;
pid nginx.pid;
error_log stderr crit;
events { worker_connections 256; }
http {
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    access_log off;
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }
    upstream rig_edges {
        server 127.0.0.1:%d;
    }
%s
}
`, st.Edge.Port, server)
	}

	t.Run("SSE over HTTP/2", func(t *testing.T) {
		port := startNginxConf(t, nginx, "nginx-h2", dir, func(port int) string { return conf(port, block) }).Port

		client := &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			ForceAttemptHTTP2: true,
		}}
		t.Cleanup(client.CloseIdleConnections)
		url := fmt.Sprintf("https://127.0.0.1:%d/socket/sse?token=%s", port, Token(t, "alice"))
		first, reused := dialSSEWith(t, client, url)
		if first.Resp.ProtoMajor != 2 {
			t.Fatalf("SSE through nginx answered over %s, want HTTP/2", first.Resp.Proto)
		}
		if ev := first.Next(t, 5*time.Second); ev.Event != "connected" {
			t.Fatalf("first event %+v, want connected", ev)
		}
		if reused {
			t.Fatal("the first stream found a connection to reuse; the check of the second means nothing")
		}
		second, reused := dialSSEWith(t, client, url)
		if ev := second.Next(t, 5*time.Second); ev.Event != "connected" {
			t.Fatalf("second stream's first event %+v, want connected", ev)
		}
		if !reused {
			t.Fatal("the second SSE stream opened a new connection; over HTTP/2 it shares the first one")
		}

		id := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "text": "over h2"})
		for name, s := range map[string]*SSE{"first": first, "second": second} {
			ev := s.NextMessage(t, 5*time.Second)
			if ev.ID != id || !strings.Contains(ev.Data, "over h2") {
				t.Fatalf("%s stream got %+v, want message %s", name, ev, id)
			}
		}
	})

	t.Run("http2 on is refused by nginx before 1.25.1", func(t *testing.T) {
		old, version := nginxOlderThan(t, nginx, 1, 25, 1)
		spelled := strings.Replace(block, "listen 443 ssl http2;", "listen 443 ssl;\n    http2 on;", 1)
		if spelled == block {
			t.Fatal("the README's block has no `listen 443 ssl http2;` line")
		}
		sub := filepath.Join(dir, "http2-on")
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		writeNginxConfig(t, sub, conf(FreePort(t), spelled))
		out, err := exec.Command(nginx, "-t", "-p", sub, "-c", filepath.Join(sub, "nginx.conf"), "-e", "stderr").CombinedOutput()
		switch {
		case old && err == nil:
			t.Fatalf("nginx %s accepted `http2 on;`; the README says it does not:\n%s", version, out)
		case old && !bytes.Contains(out, []byte(`unknown directive "http2"`)):
			t.Fatalf("nginx %s refused `http2 on;` for another reason:\n%s", version, out)
		case !old && err != nil:
			t.Fatalf("nginx %s refused `http2 on;`, which it should know:\n%s", version, out)
		}
		t.Logf("nginx %s, `http2 on;`: %s", version, strings.TrimSpace(string(out)))
	})
}

// readmeNginxBlock returns the README's nginx code block for HTTPS.
func readmeNginxBlock(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```nginx\n(.*?)```").FindAllSubmatch(b, -1)
	for _, s := range m {
		if bytes.Contains(s[1], []byte("listen 443 ssl http2;")) {
			return string(s[1])
		}
	}
	t.Fatal("README.md has no nginx block with `listen 443 ssl http2;`")
	return ""
}

// dialSSEWith opens an SSE stream with client and reports whether it went
// over a connection the client already had.
func dialSSEWith(t *testing.T, client *http.Client, url string) (*SSE, bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var reused bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
	})
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != 200 {
		cancel()
		resp.Body.Close()
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	s := &SSE{Resp: resp, Events: make(chan SSEEvent, 1000), cancel: cancel, done: make(chan struct{})}
	go s.read()
	t.Cleanup(s.Close)
	return s, reused
}

// writeSelfSigned writes cert.pem and key.pem for 127.0.0.1 into dir and
// returns a pool that trusts the certificate.
func writeSelfSigned(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"cert.pem": {Type: "CERTIFICATE", Bytes: der},
		"key.pem":  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// nginxOlderThan reports whether nginx's version is below major.minor.patch,
// and the version it printed.
func nginxOlderThan(t *testing.T, nginx string, major, minor, patch int) (bool, string) {
	t.Helper()
	out, err := exec.Command(nginx, "-v").CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -v: %v: %s", err, out)
	}
	m := regexp.MustCompile(`nginx/(\d+)\.(\d+)\.(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("nginx -v printed no version: %s", out)
	}
	var v [3]int
	for i := range v {
		v[i], _ = strconv.Atoi(string(m[i+1]))
	}
	want := [3]int{major, minor, patch}
	for i := range v {
		if v[i] != want[i] {
			return v[i] < want[i], fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2])
		}
	}
	return false, fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2])
}
