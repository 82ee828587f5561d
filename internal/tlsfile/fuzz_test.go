package tlsfile

import (
	"bytes"
	"errors"
	"testing"

	"github.com/rig-go/rig/internal/tlsfile/tlsfiletest"
)

// FuzzParse feeds the pair parser arbitrary certificate and key files: it
// never panics, an error always names the file at fault, and a pair it
// accepts has a leaf that is the first certificate of the file.
func FuzzParse(f *testing.F) {
	ca := tlsfiletest.NewCA(f, "fuzz CA")
	a, b := ca.Issue(f, "a"), ca.Issue(f, "b")
	f.Add(a.CertPEM, a.KeyPEM)
	f.Add(a.CertPEM, b.KeyPEM)
	f.Add(a.KeyPEM, a.CertPEM)
	f.Add(a.CertPEM[:len(a.CertPEM)/2], a.KeyPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Add([]byte{}, []byte{})
	p := &Pair{certFile: "cert.pem", keyFile: "key.pem"}
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		c, err := p.parse(certPEM, keyPEM)
		if err != nil {
			var e *Error
			if c != nil || !errors.As(err, &e) || e.Path == "" || (e.Part == CertFile) != (e.Path == "cert.pem") {
				t.Fatalf("parse = %v, %v: want a nil pair and an *Error naming its file", c, err)
			}
			return
		}
		if c.Leaf == nil || len(c.Certificate) == 0 || !bytes.Equal(c.Leaf.Raw, c.Certificate[0]) {
			t.Fatalf("accepted pair without its leaf: %+v", c)
		}
	})
}
