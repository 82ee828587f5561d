package proxy

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestPinQuery(t *testing.T) {
	for _, c := range []struct {
		query, header, want string
	}{
		{"a=1&jwt=forged,good&b=2", "", "a=1&b=2&jwt=good"},
		{"jwt=forged&a=1&jw%74=x", "Bearer good", "a=1"},
		{"", "", "jwt=good"},
		{"a=1", "Bearer good", "a=1"},
	} {
		if got := pinQuery(c.query, "jwt", &verified{header: c.header, token: "good"}); got != c.want {
			t.Errorf("pinQuery(%q, header %q) = %q, want %q", c.query, c.header, got, c.want)
		}
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{"X-Rig-User": true, "a!#$%&'*+.^_`|~9": true, "": false,
		"X Y": false, "X(Y)": false, "X\x80": false, "X:Y": false, "X\x7f": false} {
		if got := validName([]byte(name)); got != want {
			t.Errorf("validName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestDropTrailers(t *testing.T) {
	var req fasthttp.Request
	raw := "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sig\r\nX-Sig: head\r\nX-Kept: 1\r\n\r\n" +
		"5\r\nhello\r\n0\r\nX-Sig: forged\r\nX-Unannounced: 2\r\n\r\n"
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	dropTrailers(&req.Header)
	if got := req.Header.PeekAll("X-Sig"); len(got) != 1 || string(got[0]) != "head" {
		t.Errorf("X-Sig = %q, want only the head's value", got)
	}
	for _, k := range []string{"X-Unannounced", "Trailer"} {
		if v := req.Header.Peek(k); len(v) != 0 {
			t.Errorf("%s = %q survived", k, v)
		}
	}
	if string(req.Header.Peek("X-Kept")) != "1" || string(req.Body()) != "hello" {
		t.Errorf("head or body lost: %q %q", req.Header.Peek("X-Kept"), req.Body())
	}
}
