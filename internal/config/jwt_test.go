package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func pemBlock(t testing.TB, typ string, der []byte) string {
	t.Helper()
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func pkixPEM(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock(t, "PUBLIC KEY", der)
}

func TestParsePublicKeys(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "idp"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, rsaKey.Public(), rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	privDER, _ := x509.MarshalPKCS8PrivateKey(edPriv)

	all := pkixPEM(t, rsaKey.Public()) + "\n" + pkixPEM(t, ec.Public()) + pkixPEM(t, edPub) +
		pemBlock(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)) + pemBlock(t, "CERTIFICATE", certDER)
	keys, err := ParsePublicKeys([]byte(all))
	if err != nil || len(keys) != 5 {
		t.Fatalf("five blocks: %d keys, %v", len(keys), err)
	}
	if _, ok := keys[4].(*rsa.PublicKey); !ok {
		t.Errorf("certificate's key is a %T", keys[4])
	}
	for name, c := range map[string]struct{ text, reason string }{
		"empty":       {"", "no PEM block"},
		"not PEM":     {"ssh-rsa AAAA...", "no PEM block"},
		"private key": {pemBlock(t, "PRIVATE KEY", privDER), "PEM block 1 (PRIVATE KEY): a private key"},
		"RSA 1024":    {pkixPEM(t, small.Public()), "RSA key of 1024 bits: expected at least 2048"},
		"P-224":       {pkixPEM(t, rsaKey.Public()) + pkixPEM(t, p224.Public()), "PEM block 2 (PUBLIC KEY): EC curve P-224"},
		"bad DER":     {pemBlock(t, "PUBLIC KEY", []byte("nope")), "PEM block 1 (PUBLIC KEY)"},
		"other type":  {pemBlock(t, "X509 CRL", []byte("x")), "expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE"},
		"text after":  {pkixPEM(t, edPub) + "garbage", "text after PEM block 1"},
	} {
		if keys, err := ParsePublicKeys([]byte(c.text)); err == nil || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s: %d keys, %v; want %q", name, len(keys), err, c.reason)
		}
	}
}

func TestJWTSettings(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	file := filepath.Join(t.TempDir(), "keys.pem")
	if err := os.WriteFile(file, []byte(pkixPEM(t, ec.Public())), 0o600); err != nil {
		t.Fatal(err)
	}
	oneLine := strings.ReplaceAll(pkixPEM(t, rsaKey.Public()), "\n", `\n`)
	c, err := ParseEdge(nil, env(map[string]string{
		"JWT_PUBLIC_KEY": oneLine, "JWT_PUBLIC_KEY_FILE": file, "JWT_JWKS_URL": "https://idp.example.com/jwks, http://127.0.0.1:8080/certs",
		"JWT_ISSUER": "https://idp.example.com", "JWT_AUDIENCE": "rig, push", "JWT_LEEWAY": "30s",
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	j := c.JWT
	if len(j.PublicKeys) != 2 || len(j.JWKS.URLs) != 2 || j.SecretKey != "" || j.Leeway != 30*time.Second ||
		len(j.Issuers) != 1 || len(j.Audiences) != 2 || j.JWKS.Refresh != 15*time.Minute || j.JWKS.UnknownKIDRefresh != 30*time.Second ||
		j.JWKS.Timeout != 10*time.Second || j.JWKS.MaxSize != 256<<10 {
		t.Fatalf("parsed %+v", j)
	}
	c, err = ParseEdge(nil, env(map[string]string{"JWT_SECRET_KEY": "current-secret", "JWT_SECRET_KEY_PREVIOUS": "previous-secret",
		"JWT_SECRET_KEY_PREVIOUS_UNTIL": "2030-01-31T12:00:00Z"}), nil)
	if err != nil || c.JWT.PreviousSecretKey != "previous-secret" || !c.JWT.PreviousUntil.Equal(time.Date(2030, 1, 31, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("previous secret: %+v, %v", c, err)
	}
	// Ingest: no key at all is fine there.
	if ic, err := ParseIngest(nil, env(nil), nil); err != nil || ic.JWT.HasKeys() {
		t.Fatalf("ingest without keys: %v", err)
	}
	if ic, err := ParseIngest(nil, env(map[string]string{"JWT_JWKS_URL": "https://idp.example.com/jwks"}), nil); err != nil || !ic.JWT.HasKeys() {
		t.Fatalf("ingest with a JWKS: %v", err)
	}

	for name, c := range map[string]struct {
		env  map[string]string
		want string
	}{
		"no key at all":          {nil, `invalid JWT_SECRET_KEY="": expected a secret of at least 8 bytes, or public keys (JWT_PUBLIC_KEY, JWT_PUBLIC_KEY_FILE) or a key set (JWT_JWKS_URL)`},
		"short previous":         {map[string]string{"JWT_SECRET_KEY": "12345678", "JWT_SECRET_KEY_PREVIOUS": "short"}, `invalid JWT_SECRET_KEY_PREVIOUS="(hidden)": expected a secret of at least 8 bytes`},
		"previous alone":         {map[string]string{"JWT_PUBLIC_KEY_FILE": file, "JWT_SECRET_KEY_PREVIOUS": "previous-secret"}, `invalid JWT_SECRET_KEY_PREVIOUS="(hidden)": expected no value without JWT_SECRET_KEY`},
		"until not a time":       {map[string]string{"JWT_SECRET_KEY": "12345678", "JWT_SECRET_KEY_PREVIOUS": "previous", "JWT_SECRET_KEY_PREVIOUS_UNTIL": "tomorrow"}, `invalid JWT_SECRET_KEY_PREVIOUS_UNTIL="tomorrow": expected an RFC 3339 time`},
		"until without previous": {map[string]string{"JWT_SECRET_KEY": "12345678", "JWT_SECRET_KEY_PREVIOUS_UNTIL": "2030-01-01T00:00:00Z"}, `expected no value without JWT_SECRET_KEY_PREVIOUS`},
		"bad PEM":                {map[string]string{"JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"}, `expected PEM public keys or certificates: PEM block 1 (PUBLIC KEY): asn1`},
		"missing file":           {map[string]string{"JWT_PUBLIC_KEY_FILE": "/no/such/keys.pem"}, `invalid JWT_PUBLIC_KEY_FILE="/no/such/keys.pem": expected a readable file`},
		"JWKS not a URL":         {map[string]string{"JWT_JWKS_URL": "idp.example.com/jwks"}, `invalid JWT_JWKS_URL="idp.example.com/jwks": expected an https:// (or http://) URL`},
		"JWKS ftp":               {map[string]string{"JWT_JWKS_URL": "ftp://idp.example.com/jwks"}, `invalid JWT_JWKS_URL="ftp://idp.example.com/jwks"`},
		"JWKS with password":     {map[string]string{"JWT_JWKS_URL": "https://u:p@idp.example.com/jwks"}, `invalid JWT_JWKS_URL`},
		"leeway too long":        {map[string]string{"JWT_SECRET_KEY": "12345678", "JWT_LEEWAY": "1h"}, `invalid JWT_LEEWAY="1h0m0s": expected a duration from 0 to 5m`},
		"JWKS max size":          {map[string]string{"JWT_SECRET_KEY": "12345678", "JWT_JWKS_MAX_SIZE": "10"}, `invalid JWT_JWKS_MAX_SIZE="10"`},
	} {
		_, err := ParseEdge(nil, env(c.env), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want %q", name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error is not one line: %q", name, err)
		}
	}
}

// FuzzParsePublicKeys: any text is keys or an error, never a panic, and
// every key it returns is one the verifier can pin to an algorithm.
func FuzzParsePublicKeys(f *testing.F) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	f.Add(pkixPEM(f, ec.Public()) + pkixPEM(f, edPub))
	f.Add("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
	f.Add("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----")
	f.Add("")
	f.Fuzz(func(t *testing.T, text string) {
		keys, err := ParsePublicKeys([]byte(text))
		if err == nil && len(keys) == 0 {
			t.Fatal("no error and no key")
		}
		for _, k := range keys {
			switch k := k.(type) {
			case *rsa.PublicKey:
				if k.N.BitLen() < minRSABits {
					t.Fatalf("accepted an RSA key of %d bits", k.N.BitLen())
				}
			case *ecdsa.PublicKey, ed25519.PublicKey:
			default:
				t.Fatalf("accepted a %T", k)
			}
		}
	})
}
