package config

import (
	"errors"
	"io"
	"testing"
)

func edgeEnv(extra map[string]string) func(string) string {
	env := map[string]string{"JWT_SECRET_KEY": "0123456789"}
	for k, v := range extra {
		env[k] = v
	}
	return func(k string) string { return env[k] }
}

func TestAllowedOrigins(t *testing.T) {
	c, err := ParseEdge(nil, edgeEnv(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.AllowedOrigins) != 1 || c.AllowedOrigins[0] != "*" {
		t.Fatalf("default ALLOWED_ORIGINS %v, want [*]", c.AllowedOrigins)
	}
	c, err = ParseEdge(nil, edgeEnv(map[string]string{"ALLOWED_ORIGINS": "https://app.example.com, http://localhost:3000"}), io.Discard)
	if err != nil || len(c.AllowedOrigins) != 2 || c.AllowedOrigins[1] != "http://localhost:3000" {
		t.Fatalf("%v %v", c, err)
	}
	for _, bad := range []string{"app.example.com", "https://app.example.com/", "https://app.example.com/path", "https://", "*.example.com"} {
		_, err := ParseEdge(nil, edgeEnv(map[string]string{"ALLOWED_ORIGINS": bad}), io.Discard)
		var ce *Error
		if !errors.As(err, &ce) || ce.Setting != "ALLOWED_ORIGINS" {
			t.Errorf("ALLOWED_ORIGINS=%q: %v, want a config error", bad, err)
		}
	}
}

func TestWSMaxFrameSize(t *testing.T) {
	c, err := ParseEdge(nil, edgeEnv(nil), io.Discard)
	if err != nil || c.WSMaxFrameSize != 64<<10 {
		t.Fatalf("default WS_MAX_FRAME_SIZE %d, %v", c.WSMaxFrameSize, err)
	}
	c, err = ParseEdge([]string{"--ws-max-frame-size", "1MiB"}, edgeEnv(nil), io.Discard)
	if err != nil || c.WSMaxFrameSize != 1<<20 {
		t.Fatalf("--ws-max-frame-size 1MiB: %d, %v", c.WSMaxFrameSize, err)
	}
	if _, err := ParseEdge(nil, edgeEnv(map[string]string{"WS_MAX_FRAME_SIZE": "10"}), io.Discard); err == nil {
		t.Fatal("WS_MAX_FRAME_SIZE=10 accepted")
	}
}
