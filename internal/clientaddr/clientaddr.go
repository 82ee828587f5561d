// Package clientaddr finds who a request comes from: the peer of its TCP
// connection, or, when that peer is a trusted proxy (a load balancer), the
// client the proxy names in X-Forwarded-For. Only the proxies' own entries
// are believed, read from the right: what a client writes there itself
// comes first and is never reached.
package clientaddr

import (
	"bytes"
	"net"
	"net/netip"
)

// maxHops bounds how many X-Forwarded-For entries one request makes the
// edge look at: no real chain of proxies is that long.
const maxHops = 32

// Trusted is a set of proxy addresses. The zero value trusts none.
type Trusted struct {
	prefixes []netip.Prefix
}

// NewTrusted returns the set of the addresses in prefixes.
func NewTrusted(prefixes []netip.Prefix) *Trusted {
	return &Trusted{prefixes: prefixes}
}

// Contains reports whether a is a trusted proxy's address.
func (t *Trusted) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Addr is the netip form of a connection's remote address (zero if it is
// not an IP address).
func Addr(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Resolve returns the client of a request from peer whose X-Forwarded-For
// header lines are forwarded (in the order received). A peer that is not a
// trusted proxy is the client, whatever it forwards. Behind trusted ones,
// the client is the right-most entry that is not itself a trusted proxy.
//
// limited reports whether the client should be limited per address: false
// when every hop is a trusted proxy (a load balancer's own requests, a
// load generator on loopback), which per-address limits must not throttle.
// An entry that is no address ends the walk: the client is the zero Addr,
// limited, so all such clients share one allowance.
func (t *Trusted) Resolve(peer netip.Addr, forwarded [][]byte) (client netip.Addr, limited bool) {
	peer = peer.Unmap()
	if !t.Contains(peer) {
		return peer, true
	}
	client, hops := peer, 0
	for i := len(forwarded) - 1; i >= 0; i-- {
		v := forwarded[i]
		for len(v) > 0 {
			var entry []byte
			if j := bytes.LastIndexByte(v, ','); j >= 0 {
				entry, v = v[j+1:], v[:j]
			} else {
				entry, v = v, nil
			}
			entry = bytes.TrimSpace(entry)
			if len(entry) == 0 {
				continue
			}
			if hops++; hops > maxHops {
				return netip.Addr{}, true
			}
			a, ok := parseEntry(entry)
			if !ok {
				return netip.Addr{}, true
			}
			if !t.Contains(a) {
				return a, true
			}
			client = a
		}
	}
	return client, false
}

// parseEntry reads one X-Forwarded-For entry: an address, as nginx and
// most proxies write it, or with a port (1.2.3.4:80, [2001:db8::1]:80),
// as some do.
func parseEntry(b []byte) (netip.Addr, bool) {
	s := string(b)
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() && a.Zone() == "" {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}
