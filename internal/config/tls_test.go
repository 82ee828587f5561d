package config

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/tlsfile/tlsfiletest"
)

func TestPublicTLS(t *testing.T) {
	ca := tlsfiletest.NewCA(t, "test CA")
	a, b := ca.Issue(t, "a"), ca.Issue(t, "b")
	dir := t.TempDir()
	file := func(name string, content []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	aCert, aKey, bKey := file("a.crt", a.CertPEM), file("a.key", a.KeyPEM), file("b.key", b.KeyPEM)
	parse := func(m map[string]string) (*Edge, error) {
		m["JWT_SECRET_KEY"] = "12345678"
		return ParseEdge(nil, env(m), nil)
	}

	c, err := parse(map[string]string{})
	if err != nil || c.TLS.Pair != nil || c.TLS.ReloadInterval != 5*time.Second {
		t.Fatalf("without TLS settings: %+v, %v; want TLS off, reloads every 5s", c.TLS, err)
	}
	c, err = parse(map[string]string{"TLS_CERT_FILE": aCert, "TLS_KEY_FILE": aKey, "TLS_RELOAD_INTERVAL": "1s"})
	if err != nil || c.TLS.Pair == nil || c.TLS.Pair.Leaf().Subject.CommonName != "a" || c.TLS.ReloadInterval != time.Second {
		t.Fatalf("with a valid pair: %+v, %v", c.TLS, err)
	}

	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"TLS_CERT_FILE": aCert}, `invalid TLS_KEY_FILE="": expected the private key file of TLS_CERT_FILE=` + strconv.Quote(aCert) + ` (TLS needs both, or neither)`},
		{map[string]string{"TLS_KEY_FILE": aKey}, `invalid TLS_CERT_FILE="": expected the certificate file of TLS_KEY_FILE=` + strconv.Quote(aKey)},
		{map[string]string{"TLS_CERT_FILE": missing, "TLS_KEY_FILE": aKey}, `invalid TLS_CERT_FILE=` + strconv.Quote(missing) + `: expected a readable PEM file whose first certificate is the server's (open ` + missing + `: no such file or directory)`},
		{map[string]string{"TLS_CERT_FILE": aCert, "TLS_KEY_FILE": aCert}, `invalid TLS_KEY_FILE=` + strconv.Quote(aCert) + `: expected a readable PEM file with a private key (no PEM PRIVATE KEY block)`},
		{map[string]string{"TLS_CERT_FILE": aCert, "TLS_KEY_FILE": bKey}, `invalid TLS_KEY_FILE=` + strconv.Quote(bKey) + `: expected the private key of the certificate in TLS_CERT_FILE=` + strconv.Quote(aCert) + ` (tls: private key does not match public key)`},
		{map[string]string{"TLS_CERT_FILE": aCert, "TLS_KEY_FILE": aKey, "TLS_RELOAD_INTERVAL": "10ms"}, `invalid TLS_RELOAD_INTERVAL="10ms": expected a duration of at least 100ms`},
	} {
		_, err := parse(tc.env)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line starting %q", tc.env, err, tc.want)
		}
	}
}
