package edge

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/rig-go/rig/internal/metrics"
)

// opsHandler serves the operations port: liveness and readiness for
// orchestrators and load balancers, reachable whether or not the public
// port is open, Prometheus metrics, and the profiler when PPROF is on.
// None of it is on the public port.
func (s *Server) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(s.metrics.Registry))
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		h, _ := s.health()
		writeOps(w, http.StatusOK, s.opsHealth(h))
	})
	// Ready also needs the public port open: it opens on the gate's next
	// check after the edge can serve (see keepGate), and a probe answered
	// 200 before that sends clients to a port that refuses them.
	mux.HandleFunc("GET /health/ready", func(w http.ResponseWriter, _ *http.Request) {
		h, ok := s.health()
		oh := s.opsHealth(h)
		if ok && !oh.PublicPortOpen {
			ok, oh.Status, oh.Detail = false, "unavailable", "public port not open yet"
		}
		status := http.StatusOK
		if !ok {
			status = http.StatusServiceUnavailable
		}
		writeOps(w, status, oh)
	})
	return mux
}

type opsHealth struct {
	health
	PublicPortOpen bool `json:"public_port_open"`
}

func (s *Server) opsHealth(h health) opsHealth {
	return opsHealth{health: h, PublicPortOpen: s.gate.isOpen()}
}

func writeOps(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// serveOps serves the operations port until ctx ends.
func (s *Server) serveOps(ctx context.Context) error {
	if s.opsLn == nil {
		<-ctx.Done()
		return nil
	}
	srv := &http.Server{Handler: s.opsHandler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(s.opsLn) }()
	select {
	case err := <-served:
		return stopped("METRICS_PORT", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownMargin)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-served
	return nil
}
