package auth

import "testing"

func TestBearerToken(t *testing.T) {
	for _, c := range []struct {
		in, token string
		ok        bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer  abc ", "abc", true},
		{" BEARER abc", "abc", true},
		{"Bearer ", "", false},
		{"Bearer", "", false},
		{"Basic YWxpY2U6cHc=", "", false},
		{"abc", "", false},
		{"", "", false},
	} {
		if token, ok := BearerToken(c.in); token != c.token || ok != c.ok {
			t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", c.in, token, ok, c.token, c.ok)
		}
	}
}
