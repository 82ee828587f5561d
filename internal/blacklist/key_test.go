package blacklist

import (
	"errors"
	"strings"
	"testing"
)

func TestKey(t *testing.T) {
	for _, jti := range []string{
		"a", "550e8400-e29b-41d4-a716-446655440000", "a.b.*.>", "with space", "slash/and%25",
		"ü", "\x00\xff", strings.Repeat("x", MaxSessionIDLen),
	} {
		key, err := Key(jti)
		if err != nil {
			t.Fatalf("Key(%q): %v", jti, err)
		}
		if strings.ContainsAny(key, ".*> =/") {
			t.Fatalf("Key(%q) = %q has a character with meaning in a subject", jti, key)
		}
		back, err := SessionID(key)
		if err != nil || back != jti {
			t.Fatalf("SessionID(%q) = %q, %v; want %q", key, back, err, jti)
		}
	}
	for _, bad := range []string{"", strings.Repeat("x", MaxSessionIDLen+1)} {
		if _, err := Key(bad); !errors.Is(err, ErrInvalidSessionID) {
			t.Errorf("Key(%d bytes) err = %v, want ErrInvalidSessionID", len(bad), err)
		}
	}
	for _, bad := range []string{"", "YQ==", "a.b", "YR", "!!", "YQ\nYQ"} {
		if jti, err := SessionID(bad); err == nil {
			t.Errorf("SessionID(%q) = %q, want error", bad, jti)
		}
	}
}

// FuzzKey proves, for any jti, that its key is a valid KV key made only of
// base64url characters, and that it maps back exactly; and that any key
// that decodes is the one canonical key of its jti.
func FuzzKey(f *testing.F) {
	for _, s := range []string{"a", "a.b.*.>", " \t\r\n", "%25", "ü", "\x00\xff", "YQ", "YR"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, jti string) {
		key, err := Key(jti)
		if ValidateSessionID(jti) != nil {
			if err == nil {
				t.Fatalf("Key accepted invalid jti %q", jti)
			}
			return
		}
		if err != nil {
			t.Fatalf("Key(%q): %v", jti, err)
		}
		if key == "" {
			t.Fatalf("Key(%q) is empty", jti)
		}
		for i := 0; i < len(key); i++ {
			c := key[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				t.Fatalf("Key(%q) = %q has byte %q", jti, key, c)
			}
		}
		if back, err := SessionID(key); err != nil || back != jti {
			t.Fatalf("SessionID(Key(%q)) = %q, %v", jti, back, err)
		}
		if j, err := SessionID(jti); err == nil {
			if k, _ := Key(j); k != jti {
				t.Fatalf("key %q decodes to %q, whose key is %q", jti, j, k)
			}
		}
	})
}
