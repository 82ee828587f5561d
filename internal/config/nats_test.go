package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// natsFiles writes a user seed, an account seed, a creds file, a
// self-signed certificate with its key, and a file that is none of these.
func natsFiles(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	user, _ := nkeys.CreateUser()
	useed, _ := user.Seed()
	acct, _ := nkeys.CreateAccount()
	aseed, _ := acct.Seed()
	upub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(upub)
	ujwt, err := uc.Encode(acct)
	if err != nil {
		t.Fatal(err)
	}
	creds, _ := jwt.FormatUserConfig(ujwt, useed)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "t"}, NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	oder, _ := x509.MarshalPKCS8PrivateKey(other)
	return map[string]string{
		"seed":      write("user.nk", useed),
		"acctseed":  write("account.nk", aseed),
		"creds":     write("user.creds", creds),
		"cert":      write("cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		"key":       write("key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})),
		"otherkey":  write("other.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: oder})),
		"text":      write("text", []byte("not a key\n")),
		"missing":   filepath.Join(dir, "missing"),
		"seedvalue": string(useed),
	}
}

func TestNATSAuthSettings(t *testing.T) {
	f := natsFiles(t)
	for _, c := range []struct {
		env    map[string]string
		method string
	}{
		{nil, "none"},
		{map[string]string{"NATS_CREDS_FILE": f["creds"]}, "creds"},
		{map[string]string{"NATS_NKEY_SEED_FILE": f["seed"]}, "nkey"},
		{map[string]string{"NATS_USER": "rig", "NATS_PASSWORD": "pw"}, "user"},
		{map[string]string{"NATS_TOKEN": "tok"}, "token"},
		{map[string]string{"NATS_TOKEN": "tok", "NATS_TLS_CA_FILE": f["cert"], "NATS_TLS_CERT_FILE": f["cert"], "NATS_TLS_KEY_FILE": f["key"]}, "token"},
	} {
		cfg, err := ParseEdge(nil, edgeEnv(c.env), io.Discard)
		if err != nil {
			t.Errorf("%v: %v", c.env, err)
			continue
		}
		if m := cfg.NATS.Auth.Method(); m != c.method {
			t.Errorf("%v: method %s, want %s", c.env, m, c.method)
		}
		if cfg.NATS.TLS.Enabled() != (c.env["NATS_TLS_CA_FILE"] != "") {
			t.Errorf("%v: TLS enabled %v", c.env, cfg.NATS.TLS.Enabled())
		}
	}
}

// TestNATSAuthRefused: every bad combination or file is one error naming
// the setting, never quoting a secret.
func TestNATSAuthRefused(t *testing.T) {
	f := natsFiles(t)
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"NATS_CREDS_FILE": f["creds"], "NATS_TOKEN": "secret-token"}, "NATS_CREDS_FILE, NATS_TOKEN are all set"},
		{map[string]string{"NATS_USER": "rig", "NATS_NKEY_SEED_FILE": f["seed"], "NATS_PASSWORD": "secret-pw"}, "NATS_NKEY_SEED_FILE, NATS_USER are all set"},
		{map[string]string{"NATS_PASSWORD": "secret-pw"}, `invalid NATS_USER=""`},
		{map[string]string{"NATS_USER": "rig"}, `invalid NATS_PASSWORD=""`},
		{map[string]string{"NATS_CREDS_FILE": f["missing"]}, "invalid NATS_CREDS_FILE="},
		{map[string]string{"NATS_CREDS_FILE": f["seed"]}, "invalid NATS_CREDS_FILE="},
		{map[string]string{"NATS_NKEY_SEED_FILE": f["text"]}, "invalid NATS_NKEY_SEED_FILE="},
		{map[string]string{"NATS_NKEY_SEED_FILE": f["acctseed"]}, "is not a user's"},
		{map[string]string{"NATS_NKEY_SEED_FILE": f["creds"]}, ""}, // a creds file holds a user seed too: accepted
		{map[string]string{"NATS_TLS_CA_FILE": f["text"]}, "invalid NATS_TLS_CA_FILE="},
		{map[string]string{"NATS_TLS_CA_FILE": f["missing"]}, "invalid NATS_TLS_CA_FILE="},
		{map[string]string{"NATS_TLS_CERT_FILE": f["cert"]}, `invalid NATS_TLS_KEY_FILE=""`},
		{map[string]string{"NATS_TLS_KEY_FILE": f["key"]}, `invalid NATS_TLS_CERT_FILE=""`},
		{map[string]string{"NATS_TLS_CERT_FILE": f["cert"], "NATS_TLS_KEY_FILE": f["otherkey"]}, "invalid NATS_TLS_CERT_FILE="},
		{map[string]string{"NATS_EMBEDDED": "true", "NATS_TOKEN": "secret-token"}, `invalid NATS_EMBEDDED="true"`},
		{map[string]string{"NATS_EMBEDDED": "true", "NATS_TLS_CA_FILE": f["cert"]}, `invalid NATS_EMBEDDED="true"`},
	} {
		_, err := ParseEdge(nil, edgeEnv(c.env), io.Discard)
		if c.want == "" {
			if err != nil {
				t.Errorf("%v: %v", c.env, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.env, err, c.want)
			continue
		}
		for _, secret := range []string{"secret-token", "secret-pw", f["seedvalue"]} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%v: the error quotes a secret: %v", c.env, err)
			}
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: more than one line: %q", c.env, err)
		}
	}
	// A bad value of a secret setting is hidden too.
	var ce *Error
	_, err := ParseIngest([]string{"--nats-user", "rig"}, func(string) string { return "" }, io.Discard)
	if !errors.As(err, &ce) || ce.Setting != "NATS_PASSWORD" {
		t.Fatalf("ingest --nats-user without a password: %v", err)
	}
}

// TestNATSSecretsNotInHelp: help lists the settings without the values
// of the secret ones.
func TestNATSSecretsNotInHelp(t *testing.T) {
	var out bytes.Buffer
	_, err := ParseEdge([]string{"-help"}, edgeEnv(map[string]string{"NATS_PASSWORD": "secret-pw", "NATS_USER": "rig", "NATS_TOKEN": "secret-token"}), &out)
	if err == nil {
		t.Fatal("-help returned no error")
	}
	for _, s := range []string{"NATS_CREDS_FILE", "NATS_NKEY_SEED_FILE", "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_TLS_CA_FILE", "NATS_TLS_CERT_FILE", "NATS_TLS_KEY_FILE"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("help lacks %s", s)
		}
	}
	if strings.Contains(out.String(), "secret-pw") || strings.Contains(out.String(), "secret-token") {
		t.Fatalf("help shows a secret:\n%s", out.String())
	}
}
