package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadgenSmoke runs the bench harness (e2e/loadgen) on tiny scenarios,
// every transport and group, and checks that it reports sane figures: the
// harness behind `go tool task bench` cannot rot unnoticed.
func TestLoadgenSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several stacks")
	}
	lg := filepath.Join(bin.dir, "loadgen")
	if out, err := exec.Command("go", "build", "-o", lg, "./loadgen").CombinedOutput(); err != nil {
		t.Fatalf("build loadgen: %v\n%s", err, out)
	}
	dir := t.TempDir()
	md, js := filepath.Join(dir, "BENCHMARKS.md"), filepath.Join(dir, "bench.json")
	if err := os.WriteFile(md, []byte("# Benchmarks\n\nKept text.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(lg, "bench", "-bin", bin.dir, "-smoke", "-runs", "1", "-out", md, "-json", js, "-profile=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("loadgen bench -smoke: %v\n%s", err, out)
	}
	var report struct {
		Machine struct {
			CPUs int `json:"cpus"`
		} `json:"machine"`
		Runs []struct {
			Group  string
			Error  string
			Result struct {
				Connections int
				Connect     struct{ OK, Failed int }
				Idle        []struct {
					Name      string
					RSSBefore int64 `json:"rss_before"`
					RSSAfter  int64 `json:"rss_after"`
				}
				Phases []struct {
					Name                     string
					Stored                   int64
					Expected, Received, Lost uint64
					Dups                     uint64  `json:"duplicates"`
					DeliveredRate            float64 `json:"delivered_rate"`
					P50ms                    float64 `json:"p50_ms"`
					P99ms                    float64 `json:"p99_ms"`
					Procs                    []struct {
						CPUSeconds float64 `json:"cpu_seconds"`
					}
				}
			}
		}
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &report); err != nil {
		t.Fatal(err)
	}
	if report.Machine.CPUs < 1 {
		t.Errorf("machine: %d CPUs", report.Machine.CPUs)
	}
	groups := map[string]bool{}
	for _, r := range report.Runs {
		groups[r.Group] = true
		res := r.Result
		if r.Error != "" || res.Connect.OK != res.Connections || res.Connections == 0 {
			t.Errorf("%s: error %q, %d of %d connected", r.Group, r.Error, res.Connect.OK, res.Connections)
		}
		if len(res.Idle) == 0 || res.Idle[0].RSSBefore <= 0 || res.Idle[0].RSSAfter <= res.Idle[0].RSSBefore {
			t.Errorf("%s: edge memory not measured (or did not grow): %+v", r.Group, res.Idle)
		}
		if len(res.Phases) == 0 {
			t.Errorf("%s: no phase", r.Group)
		}
		for _, ph := range res.Phases {
			cpu := 0.0
			for _, p := range ph.Procs {
				cpu += p.CPUSeconds
			}
			// CPU time comes from /proc in clock ticks (10 ms): a phase
			// shorter than a few ticks may rightly read 0.
			ticks := 0.0
			if ph.DeliveredRate > 0 {
				ticks = float64(ph.Received) / ph.DeliveredRate / 0.01
			}
			if ph.Stored == 0 || ph.Expected != uint64(ph.Stored) || ph.Received != ph.Expected || ph.Lost != 0 ||
				ph.DeliveredRate <= 0 || ph.P50ms <= 0 || ph.P50ms > ph.P99ms || ph.P99ms > 5000 || (cpu <= 0 && ticks >= 10) {
				t.Errorf("%s/%s: implausible figures %+v", r.Group, ph.Name, ph)
			}
		}
	}
	for _, g := range []string{"memory-sse", "memory-ws", "throughput", "longpoll", "scale"} {
		if !groups[g] {
			t.Errorf("group %s did not run", g)
		}
	}
	doc, _ := os.ReadFile(md)
	for _, want := range []string{"Kept text.", "<!-- bench:begin", "| target | goal |", "throughput: 200 SSE users", "<!-- bench:end -->"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("BENCHMARKS.md lacks %q:\n%s", want, doc)
		}
	}
}
