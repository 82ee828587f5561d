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

func batchServer() *Server {
	return &Server{cfg: &config.Ingest{MessageUserField: "user", MaxMessageSize: 64, BatchMaxSize: 1024, BatchMaxCount: 3}}
}

func TestParseBatch(t *testing.T) {
	s := batchServer()
	msgs, users, err := s.parseBatch([]byte(` [ {"user":"a","t":"\u00e9"} , {"x":1,"user":"b"} ] `))
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || string(msgs[0]) != `{"user":"a","t":"\u00e9"}` || string(msgs[1]) != `{"x":1,"user":"b"}` {
		t.Errorf("messages %q: want each element's bytes as sent", msgs)
	}
	if len(users) != 2 || users[0] != "a" || users[1] != "b" {
		t.Errorf("users %q", users)
	}
	for body, want := range map[string]string{
		`[`:  "400 body is not valid JSON",
		`[]`: "400 empty batch",
		`[{"user":"a"},{"user":"b"},{"user":"c"},{"user":"d"}]`:      "413 batch of 4 messages exceeds the limit of 3",
		`[{"user":"a"},{"text":"no user"}]`:                          `400 message 1: missing field "user"`,
		`[{"user":"a"},7]`:                                           "400 message 1: body must be a JSON object",
		`[{"user":"a"},{"user":"a","user":"b"}]`:                     `400 message 1: field "user" appears more than once`,
		`[{"user":"` + strings.Repeat("x", 70) + `"}]`:               "413 message 0: 81 bytes exceeds the limit of 64",
		`[` + strings.Repeat(`{"user":"a"},`, 100) + `{"user":"a"}]`: "413 batch of 1314 bytes exceeds the limit of 1024",
	} {
		_, _, err := s.parseBatch([]byte(body))
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("parseBatch(%.40s…) = %v, want %q…", body, err, want)
		}
	}
}

func TestIsArray(t *testing.T) {
	for body, want := range map[string]bool{"[]": true, " \n\t[": true, "{}": false, "": false, " x[": false} {
		if isArray([]byte(body)) != want {
			t.Errorf("isArray(%q) != %v", body, want)
		}
	}
}

// FuzzParseBatch: any batch is refused whole with a 4xx, or every message
// in it names a valid user and is a JSON object.
func FuzzParseBatch(f *testing.F) {
	for _, s := range []string{`[{"user":"a"}]`, `[{"user":"a"},{}]`, `[`, `[1,2]`, `[{"user":"a.b"},{"user":"\u0000"}]`} {
		f.Add([]byte(s))
	}
	s := batchServer()
	f.Fuzz(func(t *testing.T, body []byte) {
		msgs, users, err := s.parseBatch(body)
		if err != nil {
			var ae *api.Error
			if !errors.As(err, &ae) || ae.Status < 400 || ae.Status > 499 {
				t.Fatalf("error %v is not a 4xx", err)
			}
			return
		}
		if len(msgs) == 0 || len(msgs) != len(users) || len(msgs) > 3 {
			t.Fatalf("%d messages, %d users", len(msgs), len(users))
		}
		for i, u := range users {
			if rig.ValidateUser(u) != nil {
				t.Fatalf("accepted invalid user %q", u)
			}
			if got, err := s.userOf(msgs[i]); err != nil || got != u {
				t.Fatalf("message %d %q: user %q, %v", i, msgs[i], got, err)
			}
		}
	})
}
