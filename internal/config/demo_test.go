package config

import (
	"strings"
	"testing"
)

func TestDemo(t *testing.T) {
	parse := func(m map[string]string) (*Edge, error) {
		m["JWT_SECRET_KEY"] = "12345678"
		return ParseEdge(nil, env(m), nil)
	}
	c, err := parse(map[string]string{})
	if err != nil || c.Demo.Enabled || c.Demo.IngestURL != "http://127.0.0.1:4010" || c.Demo.IngestToken != "" {
		t.Fatalf("defaults: %+v, %v; want the demo off", c.Demo, err)
	}
	c, err = parse(map[string]string{"DEMO_ENABLED": "true", "DEMO_INGEST_URL": "https://ingest.internal:8443/", "DEMO_INGEST_TOKEN": "t0ken-0123456789abcdef"})
	if err != nil || !c.Demo.Enabled || c.Demo.IngestURL != "https://ingest.internal:8443/" || c.Demo.IngestToken != "t0ken-0123456789abcdef" {
		t.Fatalf("set: %+v, %v", c.Demo, err)
	}
	for _, bad := range []string{"127.0.0.1:4010", "ftp://host", "http://", "http://host/v1/messages", "http://u:p@host", "http://host?x=1", "http://host#f", "http://[::1"} {
		_, err := parse(map[string]string{"DEMO_INGEST_URL": bad})
		if err == nil || !strings.Contains(err.Error(), "DEMO_INGEST_URL") || !strings.Contains(err.Error(), bad) {
			t.Errorf("DEMO_INGEST_URL=%q: %v, want an error naming the setting and value", bad, err)
		}
	}
	if _, err := parse(map[string]string{"DEMO_ENABLED": "yes please"}); err == nil || !strings.Contains(err.Error(), "DEMO_ENABLED") {
		t.Errorf("DEMO_ENABLED=yes please: %v", err)
	}
}
