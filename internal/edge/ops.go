package edge

import (
	"context"
	"encoding/json"
	"net"
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
	mux.HandleFunc("GET /health/ready", func(w http.ResponseWriter, _ *http.Request) {
		h, ok := s.health()
		status := http.StatusOK
		if !ok {
			status = http.StatusServiceUnavailable
		}
		writeOps(w, status, s.opsHealth(h))
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

// ServeOps serves the operations port on ln until Shutdown.
func (s *Server) ServeOps(ln net.Listener) error {
	srv := &http.Server{Handler: s.opsHandler(), ReadHeaderTimeout: 5 * time.Second}
	s.opsMu.Lock()
	s.ops = srv
	s.opsMu.Unlock()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

func (s *Server) shutdownOps(ctx context.Context) {
	s.opsMu.Lock()
	srv := s.ops
	s.opsMu.Unlock()
	if srv != nil {
		_ = srv.Shutdown(ctx)
	}
}
