package phoenix

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var testKey = TokenKey([]byte("a secret every edge shares"))

func sampleToken() *PollToken {
	return &PollToken{ID: "AAAAAAAAAAAAAAAAAAAAAA", Gen: 42, Issued: time.Now().Unix(), Auth: AuthOf("jwt"), Vsn: V2,
		Topics: []TopicPosition{{"alice", 7}, {"alice@example.com", 0}}}
}

func TestTokenRoundTrip(t *testing.T) {
	want := sampleToken()
	s := EncodeToken(testKey, want)
	if !IsPollToken(s) || IsPollToken("eyJhbGciOi.x.y") {
		t.Fatalf("IsPollToken: %q", s)
	}
	got, err := DecodeToken(testKey, s)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
	// URL-safe: phoenix.js puts it in the query as it is.
	if strings.ContainsAny(s, "+/=?&% ") {
		t.Fatalf("token %q is not URL-safe", s)
	}
}

// TestTokenForgery: any change to a token, another key, or a payload
// the key did sign that an edge would never issue, is refused.
func TestTokenForgery(t *testing.T) {
	s := EncodeToken(testKey, sampleToken())
	for i := len(TokenPrefix); i < len(s); i++ {
		for _, c := range []byte{'A', 'x', '.', '-'} {
			if s[i] == c {
				continue
			}
			b := []byte(s)
			b[i] = c
			if _, err := DecodeToken(testKey, string(b)); err == nil {
				// Base64 without padding has bits that decode the same;
				// the signature covers the text, so any change counts.
				t.Fatalf("byte %d changed to %q: accepted", i, c)
			}
		}
	}
	if _, err := DecodeToken(TokenKey([]byte("another secret")), s); !errors.Is(err, ErrBadToken) {
		t.Fatalf("another key: %v", err)
	}
	if _, err := DecodeToken(testKey, s+strings.Repeat("A", MaxTokenLen)); !errors.Is(err, ErrBadToken) {
		t.Fatalf("too long: %v", err)
	}
	for _, bad := range []string{"", "lp1.", "lp1.x", "lp1..", "lp1.a.b.c", "eyJ.x.y"} {
		if _, err := DecodeToken(testKey, bad); !errors.Is(err, ErrBadToken) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
	// Signed, but not what an edge issues.
	signed := func(payload string) string {
		body := base64.RawURLEncoding.EncodeToString([]byte(payload))
		return TokenPrefix + body + "." + base64.RawURLEncoding.EncodeToString(sign(testKey, body))
	}
	many := make([]string, MaxTopics+1)
	for i := range many {
		many[i] = `["u` + strings.Repeat("x", i%10) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `",1]`
	}
	for name, p := range map[string]string{
		"short id":        `{"i":"abc","g":1,"t":1,"a":"x","v":2}`,
		"bad vsn":         `{"i":"AAAAAAAAAAAAAAAAAAAAAA","g":1,"t":1,"a":"x","v":3}`,
		"empty user":      `{"i":"AAAAAAAAAAAAAAAAAAAAAA","g":1,"t":1,"a":"x","v":2,"c":[["",1]]}`,
		"duplicate topic": `{"i":"AAAAAAAAAAAAAAAAAAAAAA","g":1,"t":1,"a":"x","v":2,"c":[["a",1],["a",2]]}`,
		"negative pos":    `{"i":"AAAAAAAAAAAAAAAAAAAAAA","g":1,"t":1,"a":"x","v":2,"c":[["a",-1]]}`,
		"topic shape":     `{"i":"AAAAAAAAAAAAAAAAAAAAAA","g":1,"t":1,"a":"x","v":2,"c":[["a"]]}`,
		"unknown field":   `{"i":"AAAAAAAAAAAAAAAAAAAAAA","g":1,"t":1,"a":"x","v":2,"users":["bob"]}`,
		"too many topics": `{"i":"AAAAAAAAAAAAAAAAAAAAAA","g":1,"t":1,"a":"x","v":2,"c":[` + strings.Join(many, ",") + `]}`,
		"not json":        `{"i":`,
	} {
		if _, err := DecodeToken(testKey, signed(p)); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestTokenExpiry(t *testing.T) {
	now := time.Now()
	tok := &PollToken{Issued: now.Add(-40 * time.Second).Unix()}
	if !tok.Expired(now, 30*time.Second) || tok.Expired(now, time.Minute) {
		t.Fatal("age not applied")
	}
	if future := (&PollToken{Issued: now.Add(time.Hour).Unix()}); !future.Expired(now, time.Hour) {
		t.Fatal("a token from the future is good")
	}
}

func TestAuthOf(t *testing.T) {
	a, again := AuthOf("a"), AuthOf("a")
	if AuthOf("a") == AuthOf("b") || a != again {
		t.Fatal("AuthOf does not tell JWTs apart")
	}
}

func TestSplitBatch(t *testing.T) {
	got, err := SplitBatch([]byte("a\r\n\nbb\n  \nccc\n"), true, 3, 3)
	if err != nil || !reflect.DeepEqual(got, [][]byte{[]byte("a"), []byte("bb"), []byte("ccc")}) {
		t.Fatalf("ndjson: %q %v", got, err)
	}
	if got, err := SplitBatch([]byte("a\nb"), false, 10, 1); err != nil || len(got) != 1 {
		t.Fatalf("one JSON message: %q %v", got, err)
	}
	for name, c := range map[string]struct {
		body   string
		ndjson bool
	}{
		"long line":    {"a\nbbbb\n", true},
		"too many":     {"a\nb\nc\nd", true},
		"long message": {"bbbb", false},
	} {
		if _, err := SplitBatch([]byte(c.body), c.ndjson, 3, 3); !errors.Is(err, ErrBatch) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestPollAnswer(t *testing.T) {
	var a struct {
		Status   int      `json:"status"`
		Token    string   `json:"token"`
		Messages []string `json:"messages"`
	}
	b := PollAnswer(200, "lp1.x.y", [][]byte{[]byte(`[null,"1","user:a","message",{"t":"\"q\"\n"}]`)}, "")
	if err := json.Unmarshal(b, &a); err != nil || a.Status != 200 || a.Token != "lp1.x.y" || len(a.Messages) != 1 {
		t.Fatalf("%s: %+v %v", b, a, err)
	}
	if f, err := Decode(V2, []byte(a.Messages[0])); err != nil || f.Event != "message" {
		t.Fatalf("message as phoenix.js decodes it: %+v %v", f, err)
	}
	if b := PollAnswer(410, "lp1.x.y", nil, ""); !bytes.Equal(b, []byte(`{"status":410,"token":"lp1.x.y"}`)) {
		t.Fatalf("handshake: %s", b)
	}
	if b := PollAnswer(204, "t", nil, ""); !bytes.Equal(b, []byte(`{"status":204,"token":"t","messages":[]}`)) {
		t.Fatalf("timeout: %s", b)
	}
}

// FuzzDecodeToken: no input panics, and whatever decodes is within the
// bounds and encodes back to a token that decodes the same.
func FuzzDecodeToken(f *testing.F) {
	f.Add(EncodeToken(testKey, sampleToken()))
	f.Add("lp1.e30.AAAA")
	f.Add("")
	f.Add(`{"i":"AAAAAAAAAAAAAAAAAAAAAA","g":1,"t":1,"a":"x","v":2,"c":[["a",1]]}`)
	f.Fuzz(func(t *testing.T, s string) {
		// s as a token, and s as a payload the key signed: past the
		// signature, the payload's checks are what holds.
		body := base64.RawURLEncoding.EncodeToString([]byte(s))
		for _, in := range []string{s, TokenPrefix + body + "." + base64.RawURLEncoding.EncodeToString(sign(testKey, body))} {
			tok, err := DecodeToken(testKey, in)
			if err != nil {
				if !errors.Is(err, ErrBadToken) {
					t.Fatalf("error %v does not wrap ErrBadToken", err)
				}
				continue
			}
			size := 0
			for _, tp := range tok.Topics {
				size += len(tp.User)
				if tp.User == "" {
					t.Fatalf("empty topic user: %+v", tok)
				}
			}
			if len(tok.Topics) > MaxTopics || size > MaxTopicBytes || len(tok.ID) != idLen || tok.Vsn != V1 && tok.Vsn != V2 {
				t.Fatalf("out of bounds: %+v", tok)
			}
			again, err := DecodeToken(testKey, EncodeToken(testKey, tok))
			if err != nil || !reflect.DeepEqual(again, tok) {
				t.Fatalf("round trip: %+v, %v", again, err)
			}
		}
	})
}

// FuzzSplitBatch: no input panics, and what comes out is within bounds.
func FuzzSplitBatch(f *testing.F) {
	f.Add([]byte("[null,\"1\",\"phoenix\",\"heartbeat\",{}]\n[\"1\",\"2\",\"user:a\",\"phx_join\",{}]"), true)
	f.Add([]byte("\r\n\r\n"), true)
	f.Fuzz(func(t *testing.T, body []byte, ndjson bool) {
		msgs, err := SplitBatch(body, ndjson, 64, 4)
		if err != nil {
			return
		}
		if len(msgs) > 4 {
			t.Fatalf("%d messages", len(msgs))
		}
		for _, m := range msgs {
			if len(m) > 64 || ndjson && bytes.ContainsRune(m, '\n') {
				t.Fatalf("message %q", m)
			}
		}
	})
}
