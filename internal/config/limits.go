package config

import (
	"net/netip"
	"strings"
	"time"
)

// Limits bound what the edge's public port takes: connections in all, per
// client address, per user and per session, and how long a connection may
// take to send its request head.
type Limits struct {
	MaxConnections    int            // MAX_CONNECTIONS; 0: derived from the open-file limit
	PerIP             int            // MAX_CONNECTIONS_PER_IP; 0: none
	PerMinute         int            // MAX_CONNECTIONS_PER_MINUTE (per client address); 0: none
	PerUser           int            // MAX_CONNECTIONS_PER_USER; 0: none
	PerSession        int            // MAX_CONNECTIONS_PER_SESSION; 0: none
	TrustedProxies    []netip.Prefix // TRUSTED_PROXIES
	TrustedProxiesSet string         // TRUSTED_PROXIES as given, for logs
	HeaderTimeout     time.Duration  // HEADER_TIMEOUT
}

func (s *Set) limits(l *Limits) {
	s.Int(&l.MaxConnections, "MAX_CONNECTIONS", 0, 0, 10_000_000, "Most TCP connections the public port holds at once; past it a new one is closed at once. 0 derives it from the process's open-file limit, less a reserve for NATS and upstreams (max(256, 10%)).")
	s.Int(&l.PerIP, "MAX_CONNECTIONS_PER_IP", 1000, 0, 10_000_000, "Most connections one client address holds at once (TCP connections of an untrusted peer, closed at once past it; streams and waiting long-polls of a client behind a trusted proxy, 429). 0: no limit.")
	s.Int(&l.PerMinute, "MAX_CONNECTIONS_PER_MINUTE", 5000, 0, 10_000_000, "Most /socket/* requests (SSE, WebSocket, long-poll) one client address may open a minute, as a token bucket of that size; past it 429 with Retry-After. 0: no limit.")
	s.Int(&l.PerUser, "MAX_CONNECTIONS_PER_USER", 100, 0, 10_000_000, "Most open streams (SSE, WebSocket, Phoenix) and waiting long-polls of one user (the token's) at once; past it 429. 0: no limit.")
	s.Int(&l.PerSession, "MAX_CONNECTIONS_PER_SESSION", 20, 0, 10_000_000, "Most open streams and waiting long-polls of one session (the token's jti) at once; past it 429. 0: no limit.")
	s.Prefixes(&l.TrustedProxies, &l.TrustedProxiesSet, "TRUSTED_PROXIES", "loopback,private", "Peers whose X-Forwarded-For names the client (load balancers): comma-separated IP addresses and CIDR prefixes, loopback (127.0.0.0/8, ::1), private (10/8, 172.16/12, 192.168/16, fc00::/7, and link-local 169.254/16, fe80::/10), or none. A trusted peer is not limited per address itself.")
	s.Duration(&l.HeaderTimeout, "HEADER_TIMEOUT", 5*time.Second, 100*time.Millisecond, "How long a connection may take to send a complete request head (from connecting, or from the first byte of a later request), and, with TLS_CERT_FILE, before that to finish its TLS handshake; then it is closed.")
}

// Named groups of addresses TRUSTED_PROXIES accepts.
var prefixGroups = map[string][]netip.Prefix{
	"loopback": {netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
	"private": {netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("fc00::/7"), netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("fe80::/10")},
}

// Prefixes registers a list of IP addresses and CIDR prefixes, with the
// words loopback and private for their ranges and none alone for an empty
// list. text gets the value as given.
func (s *Set) Prefixes(p *[]netip.Prefix, text *string, env, def, usage string) {
	const exp = "a comma-separated list of IP addresses and CIDR prefixes (10.0.0.0/8), loopback, private, or none"
	s.add(env, def, usage, exp, func(v string) (string, bool) {
		items := SplitList(v)
		if len(items) == 0 {
			return exp, false
		}
		var out []netip.Prefix
		for _, item := range items {
			lower := strings.ToLower(item)
			if lower == "none" {
				if len(items) > 1 {
					return exp + " (none alone)", false
				}
				break
			}
			if g, ok := prefixGroups[lower]; ok {
				out = append(out, g...)
				continue
			}
			pr, ok := parsePrefix(item)
			if !ok {
				return exp, false
			}
			out = append(out, pr)
		}
		*p, *text = out, strings.Join(items, ",")
		return "", true
	})
}

// parsePrefix reads 10.0.0.0/8 or a lone address, with IPv4-mapped IPv6
// forms turned into IPv4 so that they match the addresses peers have.
func parsePrefix(s string) (netip.Prefix, bool) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, false
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	pr, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	if a := pr.Addr(); a.Is4In6() {
		if pr.Bits() < 96 {
			return netip.Prefix{}, false
		}
		pr = netip.PrefixFrom(a.Unmap(), pr.Bits()-96)
	}
	return pr.Masked(), true
}
