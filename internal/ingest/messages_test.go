package ingest

import (
	"errors"
	"strings"
	"testing"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/rig"
)

func parserServer() *Server {
	return &Server{cfg: &config.Ingest{MessageUserField: "user", MaxMessageSize: 64 << 10}}
}

func TestUserOf(t *testing.T) {
	s := parserServer()
	good := map[string]string{
		`{"user":"alice","text":"Hi"}`:           "alice",
		`{"text":"x","user":"a@b.c"}`:            "a@b.c",
		` {"user":"\u00fc"} `:                    "ü",
		`{"user":"a.b.*.>","nested":{"user":1}}`: "a.b.*.>",
	}
	for body, want := range good {
		got, err := s.userOf([]byte(body))
		if err != nil || got != want {
			t.Errorf("userOf(%s) = %q, %v; want %q", body, got, err, want)
		}
	}
	bad := []string{``, `{`, `[]`, `null`, `"alice"`, `{"text":1}`, `{"user":null}`, `{"user":7}`,
		`{"user":""}`, `{"user":"a","user":"b"}`, `{"user":"` + strings.Repeat("x", 257) + `"}`, `{"user":"a"}{}`}
	for _, body := range bad {
		_, err := s.userOf([]byte(body))
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != 400 {
			t.Errorf("userOf(%q): %v, want a 400", body, err)
		}
	}
}

func TestIsJSON(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/json": true, "Application/JSON; charset=utf-8": true, " application/json ;x=y": true,
		"": false, "text/plain": false, "application/jsonx": false, "application/json-patch+json": false,
	} {
		if isJSON(ct) != want {
			t.Errorf("isJSON(%q) != %v", ct, want)
		}
	}
}

// FuzzUserOf: any body is either refused with a 400 or yields a valid user
// whose subject token is a single, wildcard-free NATS token.
func FuzzUserOf(f *testing.F) {
	for _, s := range []string{`{"user":"alice"}`, `{"user":"a.b"}`, `{"user":"\u0000"}`, `[`, `{"user":"x","user":"y"}`} {
		f.Add([]byte(s))
	}
	s := parserServer()
	f.Fuzz(func(t *testing.T, body []byte) {
		user, err := s.userOf(body)
		if err != nil {
			var ae *api.Error
			if !errors.As(err, &ae) || ae.Status != 400 {
				t.Fatalf("error %v is not a 400", err)
			}
			return
		}
		if rig.ValidateUser(user) != nil {
			t.Fatalf("accepted invalid user %q", user)
		}
		tok := rig.SubjectToken(user)
		if strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Fatalf("user %q gives token %q", user, tok)
		}
	})
}
