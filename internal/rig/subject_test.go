package rig

import (
	"errors"
	"strings"
	"testing"
)

func TestSubjectToken(t *testing.T) {
	cases := []struct{ user, token string }{
		{"alice", "alice"},
		{"550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716-446655440000"},
		{"alice@example.com", "alice%40example%2Ecom"},
		{"a.b", "a%2Eb"},
		{"*", "%2A"},
		{">", "%3E"},
		{"a b\tc\n", "a%20b%09c%0A"},
		{"100%", "100%25"},
		{"user.bob", "user%2Ebob"},
		{"ü", "%C3%BC"},
		{"under_score", "under_score"},
	}
	for _, c := range cases {
		if got := SubjectToken(c.user); got != c.token {
			t.Errorf("SubjectToken(%q) = %q, want %q", c.user, got, c.token)
		}
		back, err := UserFromToken(c.token)
		if err != nil || back != c.user {
			t.Errorf("UserFromToken(%q) = %q, %v; want %q", c.token, back, err, c.user)
		}
	}
}

func TestSubject(t *testing.T) {
	s, err := Subject("alice@example.com")
	if err != nil || s != "user.alice%40example%2Ecom" {
		t.Fatalf("Subject = %q, %v", s, err)
	}
	u, err := UserFromSubject(s)
	if err != nil || u != "alice@example.com" {
		t.Fatalf("UserFromSubject(%q) = %q, %v", s, u, err)
	}
	for _, bad := range []string{"", strings.Repeat("x", MaxUserLen+1)} {
		if _, err := Subject(bad); !errors.Is(err, ErrInvalidUser) {
			t.Errorf("Subject(%d bytes) err = %v, want ErrInvalidUser", len(bad), err)
		}
	}
	if _, err := Subject(strings.Repeat("x", MaxUserLen)); err != nil {
		t.Errorf("Subject(%d bytes): %v", MaxUserLen, err)
	}
}

func TestUserFromTokenRejectsNonCanonical(t *testing.T) {
	for _, tok := range []string{
		"",         // empty user
		"a.b",      // raw dot
		"a*",       // raw wildcard
		"%41",      // escaped plain byte: 'A' has its own spelling
		"%2e",      // lower-case hex
		"%2",       // truncated escape
		"%",        // truncated escape
		"%ZZ",      // not hex
		"a b",      // raw space
		"abc%2Ex%", // trailing %
	} {
		if u, err := UserFromToken(tok); err == nil {
			t.Errorf("UserFromToken(%q) = %q, want error", tok, u)
		}
	}
	if _, err := UserFromSubject("users.alice"); err == nil {
		t.Error("UserFromSubject accepted a foreign prefix")
	}
}

// FuzzSubjectToken proves, for any input, that a token never holds a byte
// that changes a subject's meaning, and that the mapping reverses exactly.
func FuzzSubjectToken(f *testing.F) {
	for _, s := range []string{"alice", "alice@example.com", "a.b.*.>", " \t\r\n", "%25", "ü", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, user string) {
		tok := SubjectToken(user)
		for i := 0; i < len(tok); i++ {
			c := tok[i]
			if c == '.' || c == '*' || c == '>' || c <= ' ' || c >= 0x7f {
				t.Fatalf("SubjectToken(%q) = %q has byte %q", user, tok, c)
			}
		}
		back, err := UserFromToken(tok)
		if ValidateUser(user) != nil {
			if err == nil {
				t.Fatalf("UserFromToken(%q) accepted invalid user %q", tok, user)
			}
			return
		}
		if err != nil || back != user {
			t.Fatalf("UserFromToken(SubjectToken(%q)) = %q, %v", user, back, err)
		}
		// Any token that decodes must be the one canonical spelling.
		if u, err := UserFromToken(user); err == nil && SubjectToken(u) != user {
			t.Fatalf("token %q decodes to %q, whose token is %q", user, u, SubjectToken(u))
		}
	})
}
