package e2e

import (
	"testing"
	"time"
)

// Ingest raises GOGC while its live heap is small (internal/gcfloor: the
// heap goal at least 64 MiB above the live heap), unless the operator set
// GOGC, whose value then stands.
func TestIngestGCFloor(t *testing.T) {
	st := StartStack(t, nil, nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		p := Scrape(t, st.Ingest.URL+"/metrics")["go_gc_gogc_percent"]
		if p > 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingest without GOGC: go_gc_gogc_percent %v, want > 100", p)
		}
		time.Sleep(50 * time.Millisecond)
	}

	env := IngestEnv(FreePort(t), st.NATSURL)
	env["GOGC"] = "150"
	own := StartIngest(t, env)
	for i := range 50 {
		Post(t, own.URL, map[string]any{"user": "gc-floor-user", "data": map[string]any{"n": i}})
	}
	if p := Scrape(t, own.URL+"/metrics")["go_gc_gogc_percent"]; p != 150 {
		t.Fatalf("ingest with GOGC=150: go_gc_gogc_percent %v, want 150", p)
	}
}
