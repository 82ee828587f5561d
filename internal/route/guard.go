package route

// What a route may point at. Whoever can add a route decides where the
// edge sends its clients' requests, from inside the network: to ingest's
// API, to the edge's own operations port, to a cloud metadata service on
// 169.254.169.254, to whatever listens on the edge's loopback. The guard
// refuses those targets unless an operator allowed them, when a route is
// posted or read from a file, and again when the edge connects, since a
// host name may resolve to something else by then (DNS rebinding).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Guard holds the rules for route targets and use_env. Its zero value
// refuses every local target and every use_env.
type Guard struct {
	// AllowLocal accepts targets on loopback, link-local and unspecified
	// addresses (PROXY_ALLOW_LOCAL_TARGETS).
	AllowLocal bool
	// Ports are the stack's own ports (edge and ingest), refused on any
	// host (PROXY_STACK_PORTS and the process's own).
	Ports []int
	// Allowed are host:port targets accepted whatever the rules above say
	// (PROXY_ALLOWED_TARGETS), in the form HostPort returns.
	Allowed []string
	// UseEnv are the environment variables use_env may name
	// (PROXY_USE_ENV_ALLOWLIST).
	UseEnv []string
	// Resolve looks a host name up when a route is checked; nil leaves
	// names to the check at connect time.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
}

// resolveTimeout bounds the lookup of a route's host name when it is
// checked: the lookup only tells early what the dial check would.
const resolveTimeout = 2 * time.Second

// preloadTimeout bounds all the lookups of a route file's host names
// together, and preloadParallel how many run at once: a file of many
// routes and a resolver that does not answer must not hold the start for
// minutes. A name not answered in time is left to the dial check.
var preloadTimeout = 5 * time.Second // a variable for the tests

const preloadParallel = 32

// Preload looks up the host names of apis' targets (getenv resolves
// use_env; nil skips those) at once, within one deadline, and returns a
// copy of g whose Resolve answers from what it found.
func (g *Guard) Preload(apis []*API, getenv func(string) string) *Guard {
	c := *g
	if g.Resolve == nil {
		return &c
	}
	hosts := map[string]bool{}
	for _, a := range apis {
		raw := a.Proxy.TargetURL
		if a.Proxy.UseEnv {
			if getenv == nil {
				continue
			}
			raw = getenv(raw)
		}
		if base, err := baseURL(raw, a.Proxy.Port); err == nil {
			_, hp, _ := strings.Cut(base, "://")
			if host, _, err := net.SplitHostPort(hp); err == nil && !isIP(host) {
				hosts[host] = true
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), preloadTimeout)
	defer cancel()
	type answer struct {
		host  string
		addrs []netip.Addr
		err   error
	}
	answers := make(chan answer, len(hosts))
	slots := make(chan struct{}, preloadParallel)
	for host := range hosts {
		go func() {
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
				addrs, err := g.Resolve(ctx, host)
				answers <- answer{host, addrs, err}
			case <-ctx.Done():
				answers <- answer{host, nil, ctx.Err()}
			}
		}()
	}
	found := make(map[string][]netip.Addr, len(hosts))
	for range hosts {
		a := <-answers
		if a.err == nil {
			found[a.host] = a.addrs
		}
	}
	c.Resolve = func(_ context.Context, host string) ([]netip.Addr, error) {
		if addrs, ok := found[host]; ok {
			return addrs, nil
		}
		return nil, fmt.Errorf("%s: not resolved when the routes were read", host)
	}
	return &c
}

// LookupHost is the Guard's Resolve with the system's resolver.
func LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// ErrRefused marks a target the guard refuses.
var ErrRefused = errors.New("target refused")

// HostPort is the form of a host and port the guard compares: the host in
// lower case, an IP address in its canonical form.
func HostPort(host string, port int) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.Unmap().WithZone("").String()
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// Check applies the guard to an API's target: a use_env variable must be
// in the allowlist, and the target (getenv's value of it, when getenv is
// not nil) must not be a refused address. The error is an *Error naming
// proxy.target_url or proxy.port; it never shows a variable's value.
func (g *Guard) Check(a *API, getenv func(string) string) error {
	t := a.Proxy
	fail := func(field, format string, args ...any) error {
		return &Error{API: a.ID, Field: field, Problem: fmt.Sprintf(format, args...)}
	}
	raw := t.TargetURL
	if t.UseEnv {
		if !slices.Contains(g.UseEnv, t.TargetURL) {
			if len(g.UseEnv) == 0 {
				return fail("proxy.target_url", "use_env names %s, but no environment variable may be used (PROXY_USE_ENV_ALLOWLIST is empty)", strconv.Quote(t.TargetURL))
			}
			return fail("proxy.target_url", "use_env names %s, which is not in PROXY_USE_ENV_ALLOWLIST (%s)", strconv.Quote(t.TargetURL), strings.Join(g.UseEnv, ","))
		}
		if getenv == nil {
			return nil // another process's environment: checked where it is read
		}
		if raw = getenv(t.TargetURL); raw == "" {
			return nil // Base says so where it matters
		}
	}
	base, err := baseURL(raw, t.Port)
	if err != nil {
		return nil // not a target at all; Base says so
	}
	// base is scheme://host:port, the host as url.Parse read it (an IPv6
	// zone is not escaped), so it is split rather than parsed again.
	_, hp, _ := strings.Cut(base, "://")
	host, p, _ := net.SplitHostPort(hp)
	port, _ := strconv.Atoi(p)
	what := strconv.Quote(host)
	if t.UseEnv {
		what = "the value of " + t.TargetURL + " (use_env)"
	}
	if err := g.checkStatic(host, port); err != nil {
		field := "proxy.target_url"
		var sp stackPort
		if errors.As(err, &sp) && t.Port > 0 {
			field = "proxy.port"
		}
		return fail(field, "%s: %s", what, err.Error())
	}
	if g.Resolve == nil || g.exempt(host, port) || isIP(host) {
		return nil
	}
	addrs, err := g.Resolve(context.Background(), host)
	if err != nil {
		return nil // an upstream that does not resolve yet is the dial check's
	}
	for _, ip := range addrs {
		if err := g.checkIP(ip); err != nil {
			if t.UseEnv {
				return fail("proxy.target_url", "%s resolves to a %s", what, err.Error())
			}
			return fail("proxy.target_url", "%s resolves to %s, a %s", what, ip.Unmap(), err.Error())
		}
	}
	return nil
}

// stackPort is a target on one of the stack's own ports.
type stackPort int

func (p stackPort) Error() string {
	return fmt.Sprintf("port %d is one of the stack's own (PROXY_STACK_PORTS, or this process's); list the target in PROXY_ALLOWED_TARGETS to allow it", int(p))
}

// checkStatic refuses what can be told without a lookup: a local IP
// address, the stack's ports, and host names that only look like names.
func (g *Guard) checkStatic(host string, port int) error {
	if g.exempt(host, port) {
		return nil
	}
	if slices.Contains(g.Ports, port) {
		return stackPort(port)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return g.checkIP(a)
	}
	if numeric(host) {
		// "2130706433", "0x7f.1", "127.1": some resolvers read these as
		// 127.0.0.1, so they are not names to leave to DNS.
		return fmt.Errorf("expected a host name or an IP address in standard form, got %s", strconv.Quote(host))
	}
	return nil
}

// checkIP refuses a local address unless local targets are allowed.
func (g *Guard) checkIP(a netip.Addr) error {
	if g.AllowLocal {
		return nil
	}
	if kind := localKind(a); kind != "" {
		return fmt.Errorf("%s address, refused (set PROXY_ALLOW_LOCAL_TARGETS=true, or list the target in PROXY_ALLOWED_TARGETS)", kind)
	}
	return nil
}

// localKind names the kind of a local address, or returns "".
func localKind(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast():
		return "link-local"
	case a.IsUnspecified() || a.Is4() && a.As4()[0] == 0:
		return "unspecified (this host)"
	}
	return ""
}

func (g *Guard) exempt(host string, port int) bool {
	return len(g.Allowed) > 0 && slices.Contains(g.Allowed, HostPort(host, port))
}

func isIP(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

// numeric reports whether host is made of digits, dots and hex notation
// only: no DNS name, but an IP address in a form netip does not read.
func numeric(host string) bool {
	host = strings.ToLower(host)
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('0' <= c && c <= '9' || c == '.' || c == 'x' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	// a-f alone spell names such as "cafe.de"; count it as numeric only
	// when every label starts with a digit.
	for _, label := range strings.Split(host, ".") {
		if label != "" && (label[0] < '0' || label[0] > '9') {
			return false
		}
	}
	return true
}

// DialCheck refuses, before connecting, an address the edge is about to
// dial: addr is the host:port asked for, and ip the address it resolved
// to. It is the same rule as Check's, for names that resolve differently
// now than when the route was checked.
func (g *Guard) DialCheck(addr string, ip netip.Addr) error {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	port, _ := strconv.Atoi(p)
	if g.exempt(host, port) {
		return nil
	}
	if err := g.checkStatic(host, port); err != nil {
		return fmt.Errorf("%w: %s", ErrRefused, err.Error())
	}
	if err := g.checkIP(ip); err != nil {
		return fmt.Errorf("%w: %s resolves to %s, a %s", ErrRefused, host, ip.Unmap(), err.Error())
	}
	return nil
}

// Control returns a net.Dialer Control hook that applies DialCheck to
// each address the dialer is about to connect to, for the host:port addr
// it was asked to dial.
func (g *Guard) Control(addr string) func(network, address string, _ syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrRefused, err)
		}
		return g.DialCheck(addr, ap.Addr())
	}
}
