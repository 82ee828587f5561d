package config

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
)

// Logger returns the slog logger l describes, writing to w. Every line it
// writes has tokens redacted (see Redact): from its message, its string
// and error values and anything else that prints as text, in both formats.
func (l Log) Logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if l.Format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(redacting{h})
}

// Redacted replaces what Redact removes.
const Redacted = "[redacted]"

// tokens matches what may be a credential in a log line:
//   - a JWT, or the start of one cut short: every JWT begins with the
//     base64url of `{"`, which is eyJ;
//   - the end of a JWT whose start was cut off (fasthttp's snippets of a
//     bad request keep its first and last 200 bytes): dots, each followed
//     by at least 32 base64url bytes, as a signature is (43 for HS256);
//   - the value of a token= query parameter (also access_token=, ...) or
//     of a bearer credential, whatever its shape.
var tokens = regexp.MustCompile(`(?i:(token=|bearer\s+))[^\s&"'\\,;]+|eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){0,2}|[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]{32,})+`)

// Redact returns s with every token in it replaced by [redacted]; the
// name of a token= parameter or of the Bearer scheme is kept, so a line
// still says what was there.
func Redact(s string) string {
	if !mayHoldToken(s) {
		return s // most values: the regexp costs ten times this scan
	}
	return tokens.ReplaceAllString(s, "${1}"+Redacted)
}

// mayHoldToken reports whether s has what each of tokens' patterns needs:
// "=", "eyJ", "bearer" in any case, or a dot followed by 32 base64url
// bytes.
func mayHoldToken(s string) bool {
	if strings.Contains(s, "=") || strings.Contains(s, "eyJ") {
		return true
	}
	run := -1 // base64url bytes since the last dot; -1: no dot yet
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			run = 0
		case run >= 0 && ('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'):
			if run++; run >= 32 {
				return true
			}
		default:
			run = -1
		}
		if (c == 'b' || c == 'B') && len(s)-i >= 6 && strings.EqualFold(s[i:i+6], "bearer") {
			return true
		}
	}
	return false
}

// redacting is a slog.Handler that redacts tokens before the handler it
// wraps formats the record. Request errors quote requests (fasthttp's
// "contents:"), NATS quotes URLs, a client may put a token anywhere it
// can: redacting every line once, here, is what makes "no token in the
// logs" hold for lines written by code that never thought of it.
type redacting struct{ next slog.Handler }

func (h redacting) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h redacting) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, Redact(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h redacting) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = redactAttr(a)
	}
	return redacting{h.next.WithAttrs(out)}
}

func (h redacting) WithGroup(name string) slog.Handler { return redacting{h.next.WithGroup(name)} }

// redactAttr returns a with tokens redacted from its value. A value that
// is not text (an error, a list, a struct) is kept as it is unless its
// text holds a token; then it becomes that text, redacted.
func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		v = slog.StringValue(Redact(v.String()))
	case slog.KindGroup:
		group := v.Group()
		out := make([]slog.Attr, len(group))
		for i, g := range group {
			out[i] = redactAttr(g)
		}
		v = slog.GroupValue(out...)
	case slog.KindAny:
		var text string
		switch x := v.Any().(type) {
		case error:
			text = x.Error()
		case []byte:
			text = string(x)
		case []string:
			out := make([]string, len(x))
			for i, s := range x {
				out[i] = Redact(s)
			}
			v = slog.AnyValue(out)
			return slog.Attr{Key: a.Key, Value: v}
		default:
			text = fmt.Sprintf("%+v", x)
		}
		if r := Redact(text); r != text {
			v = slog.StringValue(r)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
