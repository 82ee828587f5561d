package clientaddr

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func defaults() *Trusted {
	var ps []netip.Prefix
	for _, s := range []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "169.254.0.0/16", "fe80::/10"} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return NewTrusted(ps)
}

func lines(vs ...string) [][]byte {
	var out [][]byte
	for _, v := range vs {
		out = append(out, []byte(v))
	}
	return out
}

func TestResolve(t *testing.T) {
	tr := defaults()
	cases := []struct {
		peer      string
		forwarded [][]byte
		client    string
		limited   bool
	}{
		// An untrusted peer is the client, whatever it forwards.
		{"203.0.113.7", nil, "203.0.113.7", true},
		{"203.0.113.7", lines("198.51.100.1"), "203.0.113.7", true},
		{"::ffff:203.0.113.7", lines("10.0.0.1"), "203.0.113.7", true},
		// A trusted peer without the header: the load balancer itself.
		{"127.0.0.1", nil, "127.0.0.1", false},
		{"10.0.0.5", lines(""), "10.0.0.5", false},
		// nginx: the client's address appended to what the client sent.
		{"127.0.0.1", lines("198.51.100.1"), "198.51.100.1", true},
		{"127.0.0.1", lines("6.6.6.6, 198.51.100.1"), "198.51.100.1", true},
		{"10.0.0.5", lines("6.6.6.6, 198.51.100.1, 10.1.1.1"), "198.51.100.1", true},
		// Several header lines are one list, in order.
		{"10.0.0.5", lines("6.6.6.6", "198.51.100.1,10.1.1.1"), "198.51.100.1", true},
		// Every hop trusted: infrastructure, not limited; the farthest named.
		{"127.0.0.1", lines("10.1.1.1, 192.168.0.9"), "10.1.1.1", false},
		// Ports, brackets, IPv6.
		{"127.0.0.1", lines("198.51.100.1:5555"), "198.51.100.1", true},
		{"127.0.0.1", lines("[2001:db8::1]:443"), "2001:db8::1", true},
		{"127.0.0.1", lines("[2001:db8::1]"), "2001:db8::1", true},
		{"::1", lines("2001:db8::2"), "2001:db8::2", true},
		// Garbage from beyond a trusted hop: one shared, limited key.
		{"127.0.0.1", lines("198.51.100.1, nonsense"), "invalid IP", true},
		{"127.0.0.1", lines("unknown"), "invalid IP", true},
		{"127.0.0.1", lines("fe80::1%eth0"), "invalid IP", true},
		// The garbage is left of the client: never reached.
		{"127.0.0.1", lines("nonsense, 198.51.100.1"), "198.51.100.1", true},
		{"127.0.0.1", lines(" , ,198.51.100.1 ,"), "198.51.100.1", true},
	}
	for _, c := range cases {
		client, limited := tr.Resolve(netip.MustParseAddr(c.peer), c.forwarded)
		if client.String() != c.client || limited != c.limited {
			t.Errorf("peer %s, X-Forwarded-For %q: %s limited=%v, want %s limited=%v",
				c.peer, c.forwarded, client, limited, c.client, c.limited)
		}
	}
	long := strings.Repeat("10.0.0.1,", maxHops+1)
	if client, limited := tr.Resolve(netip.MustParseAddr("127.0.0.1"), lines(long)); client.IsValid() || !limited {
		t.Errorf("a chain of %d trusted hops: %s limited=%v, want the shared invalid key, limited", maxHops+1, client, limited)
	}
	none := NewTrusted(nil)
	if client, limited := none.Resolve(netip.MustParseAddr("127.0.0.1"), lines("198.51.100.1")); client.String() != "127.0.0.1" || !limited {
		t.Errorf("trusting none: %s limited=%v", client, limited)
	}
}

func TestAddr(t *testing.T) {
	if a := Addr(&net.TCPAddr{IP: net.ParseIP("127.0.0.2"), Port: 9}); a.String() != "127.0.0.2" || !a.Is4() {
		t.Errorf("TCPAddr: %s", a)
	}
	if a := Addr(&net.UnixAddr{Name: "@x", Net: "unix"}); a.IsValid() {
		t.Errorf("unix: %s", a)
	}
	if a := Addr(nil); a.IsValid() {
		t.Errorf("nil: %s", a)
	}
}

// Whatever the header, Resolve answers the peer for an untrusted peer, a
// client that is not trusted when limited (or the shared invalid key), and
// a trusted one when not.
func FuzzResolve(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1}, "198.51.100.1, 10.0.0.1")
	f.Add([]byte{203, 0, 113, 7}, "10.0.0.1")
	f.Add([]byte{10, 0, 0, 1}, "[2001:db8::1]:80,,garbage , 192.168.1.1")
	f.Add([]byte(net.ParseIP("::1").To16()), "::ffff:1.2.3.4")
	tr := defaults()
	f.Fuzz(func(t *testing.T, peerBytes []byte, header string) {
		peer, ok := netip.AddrFromSlice(peerBytes)
		if !ok {
			return
		}
		client, limited := tr.Resolve(peer, [][]byte{[]byte(header)})
		switch {
		case !tr.Contains(peer):
			if client != peer.Unmap() || !limited {
				t.Fatalf("untrusted peer %s: %s limited=%v", peer, client, limited)
			}
		case limited:
			if client.IsValid() && tr.Contains(client) {
				t.Fatalf("limited client %s is a trusted proxy", client)
			}
		default:
			if !tr.Contains(client) {
				t.Fatalf("unlimited client %s is not trusted", client)
			}
		}
	})
}
