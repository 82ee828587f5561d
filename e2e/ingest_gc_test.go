package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

// Ingest raises GOGC while its live heap is small (internal/gcfloor: the
// heap goal at least 64 MiB above the live heap), unless the operator set
// GOGC, whose value then stands.
func TestIngestGCFloor(t *testing.T) {
	st := StartStack(t, nil, nil)
	check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
		if p := Scrape(t, st.Ingest.URL+"/metrics")["go_gc_gogc_percent"]; p <= 100 {
			return fmt.Errorf("ingest without GOGC: go_gc_gogc_percent %v, want > 100", p)
		}
		return nil
	})

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
