package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestLimitsDefaults(t *testing.T) {
	c, err := ParseEdge(nil, env(map[string]string{"JWT_SECRET_KEY": "12345678"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Limits
	if l.MaxConnections != 0 || l.PerIP != 1000 || l.PerMinute != 5000 || l.PerUser != 100 || l.PerSession != 20 ||
		l.HeaderTimeout != 5*time.Second || l.TrustedProxiesSet != "loopback,private" {
		t.Fatalf("defaults: %+v", l)
	}
	for _, a := range []string{"127.0.0.1", "127.9.9.9", "::1", "10.1.2.3", "172.31.0.1", "192.168.1.1", "fd00::1", "169.254.1.1", "fe80::1"} {
		if !contains(l.TrustedProxies, a) {
			t.Errorf("%s is not trusted by default", a)
		}
	}
	for _, a := range []string{"203.0.113.7", "172.32.0.1", "2001:db8::1", "8.8.8.8"} {
		if contains(l.TrustedProxies, a) {
			t.Errorf("%s is trusted by default", a)
		}
	}
}

func contains(ps []netip.Prefix, addr string) bool {
	a := netip.MustParseAddr(addr)
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func TestTrustedProxies(t *testing.T) {
	cases := []struct {
		value              string
		trusted, untrusted []string
	}{
		{"none", nil, []string{"127.0.0.1", "10.0.0.1"}},
		{" NONE ", nil, []string{"127.0.0.1"}},
		{"10.2.0.0/16, 192.0.2.1", []string{"10.2.9.9", "192.0.2.1"}, []string{"10.3.0.1", "192.0.2.2", "127.0.0.1"}},
		{"::ffff:10.0.0.0/104,2001:db8::/32", []string{"10.5.5.5", "2001:db8::7"}, []string{"11.0.0.1"}},
		{"loopback,203.0.113.0/24", []string{"127.0.0.1", "203.0.113.9"}, []string{"10.0.0.1"}},
		{"10.0.0.1/8", []string{"10.200.0.1"}, nil}, // host bits dropped
	}
	for _, c := range cases {
		cfg, err := ParseEdge(nil, env(map[string]string{"JWT_SECRET_KEY": "12345678", "TRUSTED_PROXIES": c.value}), nil)
		if err != nil {
			t.Fatalf("%q: %v", c.value, err)
		}
		for _, a := range c.trusted {
			if !contains(cfg.Limits.TrustedProxies, a) {
				t.Errorf("%q: %s not trusted", c.value, a)
			}
		}
		for _, a := range c.untrusted {
			if contains(cfg.Limits.TrustedProxies, a) {
				t.Errorf("%q: %s trusted", c.value, a)
			}
		}
	}
	for _, bad := range []string{",", "10.0.0.0/33", "none,loopback", "lan", "10.0.0.0/8/8", "fe80::1%eth0", "::ffff:10.0.0.0/8", "1.2.3"} {
		_, err := ParseEdge(nil, env(map[string]string{"JWT_SECRET_KEY": "12345678", "TRUSTED_PROXIES": bad}), nil)
		if err == nil || !strings.Contains(err.Error(), `invalid TRUSTED_PROXIES=`) || !strings.Contains(err.Error(), "CIDR") {
			t.Errorf("%q: err %v", bad, err)
		}
	}
	for k, v := range map[string]string{"MAX_CONNECTIONS": "-1", "MAX_CONNECTIONS_PER_IP": "x", "HEADER_TIMEOUT": "1ms"} {
		_, err := ParseEdge(nil, env(map[string]string{"JWT_SECRET_KEY": "12345678", k: v}), nil)
		if err == nil || !strings.HasPrefix(err.Error(), "invalid "+k+"=") {
			t.Errorf("%s=%s: err %v", k, v, err)
		}
	}
}
