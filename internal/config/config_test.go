package config

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestEdgeDefaults(t *testing.T) {
	c, err := ParseEdge(nil, env(map[string]string{"JWT_SECRET_KEY": "12345678"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.InboundPort != 4000 || c.HeartbeatInterval != 10*time.Second || c.JWT.UserField != "user" ||
		c.JWT.RolesField != "roles" || c.NATS.MaxAge != 5*time.Minute || c.NATS.MaxPerUser != 1000 ||
		len(c.NATS.URLs) != 1 || c.NATS.Listen != "127.0.0.1:4222" || c.Log.Level != "info" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestEnvAndFlags(t *testing.T) {
	e := env(map[string]string{
		"JWT_SECRET_KEY":   "12345678",
		"INBOUND_PORT":     "5000",
		"PRIVILEGED_ROLES": "support, admin ,,",
		"NATS_URL":         "nats://a:4222,nats://b:4222",
		"LOG_LEVEL":        "DEBUG",
	})
	c, err := ParseEdge([]string{"--inbound-port=6000", "--heartbeat-interval", "2s"}, e, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.InboundPort != 6000 {
		t.Errorf("flag should win over env: port %d", c.InboundPort)
	}
	if c.HeartbeatInterval != 2*time.Second || strings.Join(c.JWT.PrivilegedRoles, "|") != "support|admin" ||
		len(c.NATS.URLs) != 2 || c.Log.Level != "debug" {
		t.Errorf("parsed %+v", c)
	}
}

func TestBadValues(t *testing.T) {
	cases := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"INBOUND_PORT": "abc"}, nil, `invalid INBOUND_PORT="abc": expected a port number from 1 to 65535`},
		{map[string]string{"INBOUND_PORT": "70000"}, nil, `invalid INBOUND_PORT="70000"`},
		{map[string]string{"HEARTBEAT_INTERVAL": "10"}, nil, `invalid HEARTBEAT_INTERVAL="10": expected a duration`},
		{map[string]string{"NATS_EMBEDDED": "yes please"}, nil, `invalid NATS_EMBEDDED="yes please": expected true or false`},
		{map[string]string{"NATS_LISTEN": "4222"}, nil, `invalid NATS_LISTEN="4222": expected host:port`},
		{map[string]string{"LOG_FORMAT": "xml"}, nil, `invalid LOG_FORMAT="xml": expected one of text, json`},
		{nil, []string{"--client-queue-size=0"}, `invalid --client-queue-size="0": expected an integer from 8 to 1000000`},
		{map[string]string{"JWT_SECRET_KEY": ""}, nil, `invalid JWT_SECRET_KEY=""`},
		{map[string]string{"JWT_SECRET_KEY": "short"}, nil, `invalid JWT_SECRET_KEY="(hidden)": expected a secret of at least 8 bytes`},
		{map[string]string{"PHOENIX_LONGPOLL_SECRET": "short"}, nil, `invalid PHOENIX_LONGPOLL_SECRET="(hidden)": expected a secret of at least 16 bytes`},
		{map[string]string{"PHOENIX_LONGPOLL_TIMEOUT": "1ms"}, nil, `invalid PHOENIX_LONGPOLL_TIMEOUT="1ms"`},
		{nil, []string{"--no-such-flag"}, `flag provided but not defined`},
		{nil, []string{"stray"}, `unexpected argument "stray"`},
	}
	for _, c := range cases {
		e := map[string]string{"JWT_SECRET_KEY": "12345678"}
		for k, v := range c.env {
			e[k] = v
		}
		_, err := ParseEdge(c.args, env(e), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("env %v args %v: err %v, want %q", c.env, c.args, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
	}
	_, err := ParseIngest(nil, env(map[string]string{"MESSAGE_MAX_SIZE": "10GiB"}), nil)
	var ce *Error
	if !errors.As(err, &ce) || ce.Setting != "MESSAGE_MAX_SIZE" {
		t.Errorf("MESSAGE_MAX_SIZE: %v", err)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	_, err := ParseEdge([]string{"--jwt-secret-key=abc"}, env(nil), nil)
	if err == nil || strings.Contains(err.Error(), "abc") {
		t.Fatalf("short secret: err %v (must fail without showing the value)", err)
	}
	var out bytes.Buffer
	_, err = ParseEdge([]string{"--help"}, env(map[string]string{"JWT_SECRET_KEY": "super-secret-value"}), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	if strings.Contains(out.String(), "super-secret-value") {
		t.Fatal("help printed the secret")
	}
	for _, name := range []string{"--inbound-port, INBOUND_PORT", "JWT_SECRET_KEY", "HEARTBEAT_INTERVAL  (default 10s)", "NATS_URL"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("help lacks %q:\n%s", name, out.String())
		}
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]int{"65536": 65536, "64KiB": 64 << 10, "1MiB": 1 << 20, "2k": 2048, "1 MB": 1 << 20, "10b": 10} {
		if n, ok := ParseSize(in); !ok || n != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, n, ok, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1.5MiB", "1GiB"} {
		if _, ok := ParseSize(bad); ok && bad != "1GiB" {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
	if FormatSize(64<<10) != "64KiB" || FormatSize(1<<20) != "1MiB" || FormatSize(100) != "100" {
		t.Error("FormatSize")
	}
}

func TestIngestConfig(t *testing.T) {
	c, err := ParseIngest(nil, env(map[string]string{"MESSAGE_MAX_SIZE": "1MiB", "MESSAGE_USER_FIELD": "userId"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxMessageSize != 1<<20 || c.MessageUserField != "userId" || c.APIPort != 4010 {
		t.Fatalf("%+v", c)
	}
}

// TestIdempotencyWindow: 30s by default, following a shorter history
// (JetStream refuses a longer window than the stream's max age), and an
// explicit window longer than the history is refused at start.
func TestIdempotencyWindow(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want time.Duration
	}{
		{nil, 30 * time.Second},
		{map[string]string{"HISTORY_MAX_AGE": "10s"}, 10 * time.Second},
		{map[string]string{"IDEMPOTENCY_WINDOW": "2m"}, 2 * time.Minute},
		{map[string]string{"IDEMPOTENCY_WINDOW": "5s", "HISTORY_MAX_AGE": "5s"}, 5 * time.Second},
	} {
		got, err := ParseIngest(nil, env(c.env), nil)
		if err != nil || got.NATS.IdempotencyWindow != c.want {
			t.Errorf("env %v: window %v, %v; want %v", c.env, got.NATS.IdempotencyWindow, err, c.want)
		}
	}
	_, err := ParseIngest(nil, env(map[string]string{"IDEMPOTENCY_WINDOW": "1m", "HISTORY_MAX_AGE": "20s"}), nil)
	if err == nil || !strings.Contains(err.Error(), `invalid IDEMPOTENCY_WINDOW="1m0s": expected a duration of at most HISTORY_MAX_AGE (20s)`) {
		t.Errorf("window longer than history: %v", err)
	}
	if _, err := ParseEdge(nil, env(map[string]string{"JWT_SECRET_KEY": "12345678", "IDEMPOTENCY_WINDOW": "50ms"}), nil); err == nil {
		t.Error("a window under JetStream's 100ms minimum was accepted")
	}
}

// TestIngestAPIAuth: API_HOST defaults to loopback; API_TOKENS is a list
// of long-enough tokens whose values never show in an error.
func TestIngestAPIAuth(t *testing.T) {
	c, err := ParseIngest(nil, env(nil), nil)
	if err != nil || c.APIHost != "127.0.0.1" || c.APITokens != nil || c.APITokensProtectOps {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	c, err = ParseIngest(nil, env(map[string]string{"API_HOST": "0.0.0.0", "API_TOKENS": " old-token-0123456789 , new-token-0123456789 ", "API_TOKENS_PROTECT_OPS": "true"}), nil)
	if err != nil || c.APIHost != "0.0.0.0" || len(c.APITokens) != 2 || c.APITokens[1] != "new-token-0123456789" || !c.APITokensProtectOps {
		t.Fatalf("set: %+v, %v", c, err)
	}
	_, err = ParseIngest(nil, env(map[string]string{"API_TOKENS": "good-token-0123456789,short-secret"}), nil)
	if err == nil || !strings.Contains(err.Error(), "API_TOKENS") || strings.Contains(err.Error(), "short-secret") {
		t.Errorf("short token: %v", err)
	}
	for _, h := range []string{"127.0.0.1:4010", "a b", "http://x"} {
		if _, err := ParseIngest(nil, env(map[string]string{"API_HOST": h}), nil); err == nil || !strings.Contains(err.Error(), "API_HOST") {
			t.Errorf("API_HOST=%q: %v", h, err)
		}
	}
	for _, h := range []string{"", "::1", "ingest", "rig-ingest.default.svc"} {
		if _, err := ParseIngest(nil, env(map[string]string{"API_HOST": h}), nil); err != nil {
			t.Errorf("API_HOST=%q: %v", h, err)
		}
	}
}

// TestAdminMetricsInterval: ADMIN_METRICS_INTERVAL defaults to 5s and
// takes 250ms to 1m; outside that, one line names it and the value.
func TestAdminMetricsInterval(t *testing.T) {
	c, err := ParseIngest(nil, env(nil), nil)
	if err != nil || c.AdminMetricsInterval != 5*time.Second {
		t.Fatalf("default %v, %v", c.AdminMetricsInterval, err)
	}
	if c, err := ParseIngest(nil, env(map[string]string{"ADMIN_METRICS_INTERVAL": "1m"}), nil); err != nil || c.AdminMetricsInterval != time.Minute {
		t.Fatalf("1m: %v, %v", c.AdminMetricsInterval, err)
	}
	for v, want := range map[string]string{
		"100ms": `invalid ADMIN_METRICS_INTERVAL="100ms": expected a duration of at least 250ms`,
		"2m":    `invalid ADMIN_METRICS_INTERVAL="2m0s": expected a duration from 250ms to 1m`,
		"5":     `invalid ADMIN_METRICS_INTERVAL="5": expected a duration`,
	} {
		if _, err := ParseIngest(nil, env(map[string]string{"ADMIN_METRICS_INTERVAL": v}), nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ADMIN_METRICS_INTERVAL=%s: %v, want %s", v, err, want)
		}
	}
}
