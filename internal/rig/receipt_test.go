package rig

import (
	"strings"
	"testing"
)

func TestValidReceiptSubject(t *testing.T) {
	for _, ok := range []string{"_RIG_RECEIPT.a", "_RIG_RECEIPT.Abc-12_x", "_RIG_RECEIPT." + strings.Repeat("z", MaxReceiptTokenLen)} {
		if !ValidReceiptSubject(ok) {
			t.Errorf("ValidReceiptSubject(%q) = false", ok)
		}
	}
	for _, bad := range []string{
		"", "_RIG_RECEIPT.", "_RIG_RECEIPT", "_rig_receipt.a", "user.bob", "rig.live.user.bob",
		"_RIG_RECEIPT.*", "_RIG_RECEIPT.>", "_RIG_RECEIPT.a.b", "_RIG_RECEIPT.a b", "_RIG_RECEIPT.a\r\n",
		"_RIG_RECEIPT.%2A", "_RIG_RECEIPT.ü", " _RIG_RECEIPT.a", "x_RIG_RECEIPT.a",
		"_RIG_RECEIPT." + strings.Repeat("z", MaxReceiptTokenLen+1),
	} {
		if ValidReceiptSubject(bad) {
			t.Errorf("ValidReceiptSubject(%q) = true", bad)
		}
	}
}

// FuzzValidReceiptSubject: whatever a back-end puts in the header, what
// the guard accepts is one literal subject under ReceiptPrefix, at most
// 13+64 bytes, with no wildcard, separator or white space after it.
func FuzzValidReceiptSubject(f *testing.F) {
	for _, s := range []string{"_RIG_RECEIPT.abc", "_RIG_RECEIPT.>", "user.bob", "_RIG_RECEIPT.a.b", "_RIG_RECEIPT.\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidReceiptSubject(s) {
			return
		}
		tok, ok := strings.CutPrefix(s, ReceiptPrefix)
		if !ok || tok == "" || len(tok) > MaxReceiptTokenLen || strings.ContainsAny(tok, ".*> \t\r\n\x00") {
			t.Fatalf("accepted %q", s)
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] >= 0x80 {
				t.Fatalf("accepted non-ASCII %q", s)
			}
		}
	})
}
