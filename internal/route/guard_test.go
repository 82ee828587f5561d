package route

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

func target(t testing.TB, proxy string) *API {
	t.Helper()
	a, err := ParseAPI([]byte(`{"id":"svc","version_data":{"default":{"endpoints":[{"id":"e","path":"/a","method":"GET"}]}},"proxy":` + proxy + `}`))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// resolver answers from a fixed table; other names do not resolve.
func resolver(names map[string]string) func(context.Context, string) ([]netip.Addr, error) {
	return func(_ context.Context, host string) ([]netip.Addr, error) {
		ip, ok := names[host]
		if !ok {
			return nil, errors.New("no such host")
		}
		return []netip.Addr{netip.MustParseAddr(ip)}, nil
	}
}

// TestGuardCheck: local addresses, numeric host spellings, the stack's
// ports and use_env outside the allowlist are refused naming the field;
// other targets, and the ones an operator allowed, are accepted.
func TestGuardCheck(t *testing.T) {
	strict := Guard{
		Ports:   []int{4000, 4001, 4010},
		UseEnv:  []string{"USERS_URL"},
		Resolve: resolver(map[string]string{"localhost": "127.0.0.1", "rebound.example": "::1", "users.internal": "10.0.0.7", "meta.example": "169.254.169.254"}),
	}
	env := map[string]string{"USERS_URL": "http://users.internal:8080", "JWT_SECRET_KEY": "s3cr3t-value", "LOCAL_URL": "http://127.0.0.1:9"}
	getenv := func(k string) string { return env[k] }
	for _, c := range []struct {
		proxy, field, want string
	}{
		{`{"target_url":"http://127.0.0.1","port":4010}`, "proxy.port", "port 4010 is one of the stack's own"},
		{`{"target_url":"http://127.0.0.1:8080"}`, "proxy.target_url", `"127.0.0.1": loopback address, refused`},
		{`{"target_url":"http://127.9.9.9:8080"}`, "proxy.target_url", "loopback address"},
		{`{"target_url":"http://[::1]:8080"}`, "proxy.target_url", "loopback address"},
		{`{"target_url":"http://[::ffff:127.0.0.1]:8080"}`, "proxy.target_url", "loopback address"},
		{`{"target_url":"http://169.254.169.254"}`, "proxy.target_url", "link-local address"},
		{`{"target_url":"http://[fe80::1%25eth0]:80"}`, "proxy.target_url", "link-local address"},
		{`{"target_url":"http://0.0.0.0:8080"}`, "proxy.target_url", "unspecified"},
		{`{"target_url":"http://[::]:8080"}`, "proxy.target_url", "unspecified"},
		{`{"target_url":"http://0.1.2.3"}`, "proxy.target_url", "unspecified"},
		{`{"target_url":"http://2130706433"}`, "proxy.target_url", "standard form"},
		{`{"target_url":"http://0x7f.1"}`, "proxy.target_url", "standard form"},
		{`{"target_url":"http://127.1"}`, "proxy.target_url", "standard form"},
		{`{"target_url":"http://0177.0.0.1"}`, "proxy.target_url", "standard form"},
		{`{"target_url":"http://[0:0:0:0:0:ffff:7f00:1]"}`, "proxy.target_url", "loopback address"},
		{`{"target_url":"http://users.internal:4000"}`, "proxy.target_url", "port 4000 is one of the stack's own"},
		{`{"target_url":"localhost","port":8080}`, "proxy.target_url", `"localhost" resolves to 127.0.0.1, a loopback address`},
		{`{"target_url":"https://rebound.example"}`, "proxy.target_url", "resolves to ::1"},
		{`{"target_url":"meta.example"}`, "proxy.target_url", "link-local"},
		{`{"use_env":true,"target_url":"JWT_SECRET_KEY"}`, "proxy.target_url", `use_env names "JWT_SECRET_KEY", which is not in PROXY_USE_ENV_ALLOWLIST (USERS_URL)`},
		{`{"target_url":"http://users.internal:8080"}`, "", ""},
		{`{"target_url":"http://10.0.0.7:8080"}`, "", ""},
		{`{"target_url":"http://93.184.216.34"}`, "", ""},
		{`{"target_url":"http://cafe.de"}`, "", ""},
		{`{"target_url":"http://unresolvable.example"}`, "", ""}, // left to the dial check
		{`{"use_env":true,"target_url":"USERS_URL"}`, "", ""},
	} {
		err := strict.Check(target(t, c.proxy), getenv)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v, want accepted", c.proxy, err)
			}
			continue
		}
		var re *Error
		if !errors.As(err, &re) || re.Field != c.field || re.API != "svc" || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want field %s and %q", c.proxy, err, c.field, c.want)
		}
	}

	// A percent-encoded host never gets as far as the guard.
	if _, err := ParseAPI([]byte(`{"id":"svc","version_data":{"default":{"endpoints":[]}},"proxy":{"target_url":"http://%31%32%37.0.0.1:8080"}}`)); err == nil || !strings.Contains(err.Error(), "proxy.target_url") {
		t.Errorf("percent-encoded host: %v", err)
	}

	// use_env's value is checked by the edge (getenv), never shown.
	g := strict
	g.UseEnv = []string{"LOCAL_URL"}
	err := g.Check(target(t, `{"use_env":true,"target_url":"LOCAL_URL"}`), getenv)
	if err == nil || !strings.Contains(err.Error(), "the value of LOCAL_URL (use_env): loopback address") || strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("use_env to loopback: %v", err)
	}
	// Without getenv (ingest), only the name is checked.
	if err := g.Check(target(t, `{"use_env":true,"target_url":"LOCAL_URL"}`), nil); err != nil {
		t.Errorf("use_env checked without getenv: %v", err)
	}
	none := Guard{}
	if err := none.Check(target(t, `{"use_env":true,"target_url":"USERS_URL"}`), getenv); err == nil || !strings.Contains(err.Error(), "PROXY_USE_ENV_ALLOWLIST is empty") {
		t.Errorf("use_env with an empty allowlist: %v", err)
	}

	// What the operator allows.
	open := strict
	open.AllowLocal = true
	for _, p := range []string{`{"target_url":"http://127.0.0.1:8080"}`, `{"target_url":"localhost","port":8080}`, `{"target_url":"http://169.254.169.254"}`} {
		if err := open.Check(target(t, p), getenv); err != nil {
			t.Errorf("AllowLocal, %s: %v", p, err)
		}
	}
	if err := open.Check(target(t, `{"target_url":"http://127.0.0.1","port":4010}`), getenv); err == nil {
		t.Error("AllowLocal let a stack port through")
	}
	listed := strict
	listed.Allowed = []string{HostPort("LOCALHOST.", 4010), HostPort("::1", 8080)}
	for _, p := range []string{`{"target_url":"localhost","port":4010}`, `{"target_url":"http://[::1]:8080"}`} {
		if err := listed.Check(target(t, p), getenv); err != nil {
			t.Errorf("allowed target %s: %v", p, err)
		}
	}
	if err := listed.Check(target(t, `{"target_url":"localhost","port":4011}`), getenv); err == nil {
		t.Error("an allowed host on another port got through")
	}
}

// TestGuardDialCheck: at connect time the address a name resolved to
// decides, and the allowlist is by the name asked for.
func TestGuardDialCheck(t *testing.T) {
	g := Guard{Ports: []int{4010}, Allowed: []string{HostPort("sidecar", 9000)}}
	for _, c := range []struct {
		addr, ip string
		ok       bool
	}{
		{"users.internal:80", "10.0.0.7", true},
		{"users.internal:80", "127.0.0.1", false},
		{"users.internal:80", "::ffff:127.0.0.1", false},
		{"users.internal:80", "fe80::1", false},
		{"users.internal:80", "0.0.0.0", false},
		{"users.internal:4010", "10.0.0.7", false},
		{"sidecar:9000", "127.0.0.1", true},
		{"sidecar:9001", "127.0.0.1", false},
		{"2130706433:80", "127.0.0.1", false},
		{"no-port", "10.0.0.7", false},
	} {
		err := g.DialCheck(c.addr, netip.MustParseAddr(c.ip))
		if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrRefused) {
			t.Errorf("DialCheck(%s, %s) = %v, want ok %v", c.addr, c.ip, err, c.ok)
		}
	}
	ctl := g.Control("users.internal:80")
	if err := ctl("tcp4", "127.0.0.1:80", nil); !errors.Is(err, ErrRefused) {
		t.Errorf("Control to loopback: %v", err)
	}
	if err := ctl("tcp4", "10.0.0.7:80", nil); err != nil {
		t.Errorf("Control to a private address: %v", err)
	}
}

// FuzzGuard: no target panics the guard; an accepted IP literal is never
// local nor on a stack port, and the dial check agrees with Check on it.
func FuzzGuard(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1", "http://[::ffff:7f00:1]", "0x7f.1", "http://[fe80::1%25lo]", "users.internal", "https://10.1.2.3:8443", "1.2.3.4", "[::]"} {
		f.Add(s, 0)
		f.Add(s, 4010)
	}
	g := Guard{Ports: []int{4000, 4010}}
	f.Fuzz(func(t *testing.T, targetURL string, port int) {
		in := `{"target_url":` + strconv.Quote(targetURL)
		if port > 0 && port <= 65535 {
			in += `,"port":` + strconv.Itoa(port)
		}
		a, err := ParseAPI([]byte(`{"id":"x","version_data":{"default":{"endpoints":[{"id":"e","path":"/a","method":"GET"}]}},"proxy":` + in + `}}`))
		if err != nil {
			return
		}
		base, err := a.Proxy.Base(nil)
		if err != nil {
			t.Fatalf("parsed target %q has no base: %v", targetURL, err)
		}
		host, p := splitBase(base)
		cerr := g.Check(a, nil)
		if cerr != nil {
			if strings.Contains(cerr.Error(), "\n") {
				t.Fatalf("error spans lines: %q", cerr)
			}
			return
		}
		ip, perr := netip.ParseAddr(host)
		if perr != nil {
			return
		}
		if localKind(ip) != "" || p == 4000 || p == 4010 {
			t.Fatalf("accepted %q (%s): a local address or a stack port", targetURL, base)
		}
		if err := g.DialCheck(strings.TrimPrefix(strings.TrimPrefix(base, "http://"), "https://"), ip); err != nil {
			t.Fatalf("Check accepts %q but DialCheck refuses it: %v", base, err)
		}
	})
}

func splitBase(base string) (string, int) {
	hp := base[strings.Index(base, "://")+3:]
	i := strings.LastIndexByte(hp, ':')
	p, _ := strconv.Atoi(hp[i+1:])
	return strings.Trim(hp[:i], "[]"), p
}

// TestGuardPreload: a route file's names are looked up together within
// one deadline, so names a resolver never answers do not hold the start
// for long; what was answered is checked, the rest left to the dial.
func TestGuardPreload(t *testing.T) {
	defer func(d time.Duration) { preloadTimeout = d }(preloadTimeout)
	preloadTimeout = 300 * time.Millisecond
	g := Guard{Resolve: func(ctx context.Context, host string) ([]netip.Addr, error) {
		if host == "localhost" {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
		<-ctx.Done() // a resolver that never answers
		return nil, ctx.Err()
	}}
	apis := []*API{target(t, `{"target_url":"localhost","port":8080}`)}
	for i := range 200 {
		apis = append(apis, target(t, `{"target_url":"slow-`+strconv.Itoa(i)+`.example"}`))
	}
	start := time.Now()
	pg := g.Preload(apis, nil)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Preload took %s for 200 names that never resolve", took)
	}
	// Fewer silent names than lookups at once: localhost gets its answer.
	pg2 := g.Preload(apis[:preloadParallel-1], nil)
	if err := pg2.Check(apis[0], nil); err == nil || !strings.Contains(err.Error(), "resolves to 127.0.0.1") {
		t.Fatalf("localhost after Preload: %v", err)
	}
	for _, a := range apis[1:] {
		if err := pg.Check(a, nil); err != nil {
			t.Fatalf("an unanswered name: %v", err)
		}
	}
}
