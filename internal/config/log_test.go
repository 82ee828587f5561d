package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// jwtText is a real HS256 token (user alice), as clients send it.
const jwtText = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE3OTYxNTkyNjQsImlhdCI6MTc5NjE1NTY2NCwianRpIjoiMDFNOFNLR1NUU0dERjRCOEE2UlZGVDBFVFkiLCJzdWIiOiJhbGljZSIsInVzZXIiOiJhbGljZSJ9.HWmjKd-COmdPbGXz9_y58r_ZpniXkAEpNxUUkpB0wyk"

// leaks reports which parts of jwtText appear in s.
func leaks(s string) []string {
	var out []string
	for i, part := range strings.Split(jwtText, ".") {
		if strings.Contains(s, part) {
			out = append(out, fmt.Sprintf("part %d", i))
		}
	}
	return out
}

func TestRedact(t *testing.T) {
	head, _, _ := strings.Cut(jwtText, ".")
	tail := jwtText[len(jwtText)-120:] // a snippet that lost the token's start
	for _, c := range []struct{ in, want string }{
		{"plain text, user alice, seq:42, 01K8ZQ3", "plain text, user alice, seq:42, 01K8ZQ3"},
		{"GET /socket/sse?token=" + jwtText + " HTTP/1.1", "GET /socket/sse?token=[redacted] HTTP/1.1"},
		{"/socket/sse?users[]=a&token=opaque-secret&vsn=2.0.0", "/socket/sse?users[]=a&token=[redacted]&vsn=2.0.0"},
		{"?access_token=abc", "?access_token=[redacted]"},
		{"Authorization: Bearer " + jwtText + "\r\n", "Authorization: Bearer [redacted]\r\n"},
		{"authorization: bearer some-opaque-key", "authorization: bearer [redacted]"},
		{"id " + jwtText, "id [redacted]"},
		{`contents: "GET /?x=` + head, `contents: "GET /?x=[redacted]`},
		{"..." + tail + " HTTP/1.1", "..[redacted] HTTP/1.1"},
		{"last_event_id=" + jwtText[:60], "last_event_id=[redacted]"},
		{"nats://127.0.0.1:4222 and example.com and 10.0.0.1", "nats://127.0.0.1:4222 and example.com and 10.0.0.1"},
	} {
		got := Redact(c.in)
		if got != c.want {
			t.Errorf("Redact(%q)\n = %q\nwant %q", c.in, got, c.want)
		}
		if l := leaks(got); len(l) > 0 && !strings.Contains(c.want, head) {
			t.Errorf("Redact(%q) leaks %v", c.in, l)
		}
	}
}

type request struct {
	URI   string
	Token string
}

// TestLoggerRedacts: whatever carries a token (the message, strings,
// errors, lists, structs, groups, attributes added with With) is
// redacted, in both formats; other values keep their type.
func TestLoggerRedacts(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		log := Log{Level: "debug", Format: format}.Logger(&buf)
		log = log.With("remote", "127.0.0.1", "query", "token="+jwtText)
		log.Info("request refused: GET /?token="+jwtText,
			"err", errors.New("bad request: contents: "+jwtText),
			"users", []string{"alice", jwtText},
			"raw", []byte("Bearer "+jwtText),
			"req", request{URI: "/x", Token: jwtText},
			slog.Group("g", "inner", jwtText, "n", 7),
			"status", 400,
			"clean_err", errors.New("nothing here"),
		)
		log.WithGroup("grp").Debug("nested", "k", "token="+jwtText)
		out := buf.String()
		if l := leaks(out); len(l) > 0 {
			t.Errorf("%s: %v of the token in:\n%s", format, l, out)
		}
		if strings.Count(out, Redacted) < 8 {
			t.Errorf("%s: want every token replaced by %s:\n%s", format, Redacted, out)
		}
		for _, want := range []string{"alice", "127.0.0.1", "nothing here", "request refused"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: %q missing from\n%s", format, want, out)
			}
		}
		if format == "json" {
			var m map[string]any
			line, _, _ := strings.Cut(out, "\n")
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, line)
			}
			if m["status"] != float64(400) {
				t.Errorf("status is %#v, want the number 400", m["status"])
			}
			if u, ok := m["users"].([]any); !ok || len(u) != 2 || u[0] != "alice" || u[1] != Redacted {
				t.Errorf("users is %#v, want [alice %s]", m["users"], Redacted)
			}
		}
	}
}

// FuzzRedact: a token between any two strings is redacted, whatever
// surrounds it (the output holds its parts no more often than the
// surroundings did on their own), the fast path skips no string the
// patterns match, and redacting twice changes nothing.
func FuzzRedact(f *testing.F) {
	f.Add("GET /socket/sse?token=", " HTTP/1.1")
	f.Add("Bearer ", "\r\n")
	f.Add("x", "y")
	f.Add(`"`, `\"`)
	f.Add("token=\"", ".")
	f.Add("eyJ", "eyJ")
	f.Fuzz(func(t *testing.T, before, after string) {
		out := Redact(before + jwtText + after)
		for _, part := range strings.Split(jwtText, ".") {
			if strings.Count(out, part) > strings.Count(before, part)+strings.Count(after, part) {
				t.Fatalf("Redact(%q + token + %q) = %q keeps %q", before, after, out, part)
			}
		}
		for _, s := range []string{before, after, before + after} {
			if !mayHoldToken(s) && tokens.MatchString(s) {
				t.Fatalf("the fast path skips %q, which holds a token", s)
			}
		}
		if again := Redact(out); again != out {
			t.Fatalf("Redact is not idempotent: %q, then %q", out, again)
		}
	})
}
