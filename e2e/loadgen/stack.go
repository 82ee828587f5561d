package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a process the bench started, with its log in a file.
type server struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	addr string // host:port it serves (NATS: the client port)
	ops  string // an edge's operations port; ingest's API port
	// profilePort is nats-server's --profile port; 0 without one.
	profilePort int
}

func (s *server) proc() Proc { return Proc{Name: s.name, PID: s.cmd.Process.Pid} }

// stop sends SIGTERM and kills after a while.
func (s *server) stop() {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.log.Close()
}

// freePort returns a port that is free on every address, below the
// ephemeral range (32768 and up here), so that none of the load
// generator's many client connections can be holding it when a server
// binds it.
func freePort() (int, error) {
	for range 100 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port found in 20000-31999")
}

func startServer(dir, name, path string, args []string, env map[string]string) (*server, error) {
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// LOADGEN_SERVER_ENV (K=V,K=V) reaches every server process, after the
	// scenario's own: to compare runtime settings such as GOMAXPROCS.
	if extra := os.Getenv("LOADGEN_SERVER_ENV"); extra != "" {
		cmd.Env = append(cmd.Env, strings.Split(extra, ",")...)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &server{name: name, cmd: cmd, log: log}, nil
}

// waitFor polls cond every 20ms for up to timeout.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func httpOK(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// startNATS starts nats-server with JetStream on a loopback port.
func startNATS(binDir, dir string, extra ...string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	store := filepath.Join(dir, "jetstream")
	args := append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", store}, extra...)
	s, err := startServer(dir, "nats-server", filepath.Join(binDir, "nats-server"), args, nil)
	if err != nil {
		return nil, err
	}
	s.addr = fmt.Sprintf("127.0.0.1:%d", port)
	if !waitFor(15*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", s.addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		s.stop()
		return nil, fmt.Errorf("nats-server did not listen on %s (log: %s)", s.addr, s.log.Name())
	}
	return s, nil
}

// startEdge starts an edge on NATS with env on top of the bench's settings.
func startEdge(binDir, dir, name, natsURL, secret string, env map[string]string) (*server, error) {
	return startHTTPServer(binDir, dir, name, "edge", "INBOUND_PORT", "METRICS_PORT",
		map[string]string{"NATS_URL": natsURL, "JWT_SECRET_KEY": secret, "EDGE_ID": name}, env)
}

// startIngest starts ingest on NATS with env on top of the bench's
// settings; natsURL "" leaves NATS to env (NATS_EMBEDDED).
func startIngest(binDir, dir, natsURL string, env map[string]string) (*server, error) {
	settings := map[string]string{}
	if natsURL != "" {
		settings["NATS_URL"] = natsURL
	}
	return startHTTPServer(binDir, dir, "ingest", "ingest", "API_PORT", "", settings, env)
}

// startHTTPServer starts binDir/binary as name with its port setting
// portKey, and its operations port setting opsKey unless that is "", on
// free ports, then settings and env on top, and waits until /health/ready
// answers 200 on the operations port, or the port without one.
func startHTTPServer(binDir, dir, name, binary, portKey, opsKey string, settings, env map[string]string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	e := map[string]string{portKey: strconv.Itoa(port)}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ops := addr
	if opsKey != "" {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		e[opsKey] = strconv.Itoa(p)
		ops = fmt.Sprintf("127.0.0.1:%d", p)
	}
	for k, v := range settings {
		e[k] = v
	}
	for k, v := range env {
		e[k] = v
	}
	s, err := startServer(dir, name, filepath.Join(binDir, binary), nil, e)
	if err != nil {
		return nil, err
	}
	s.addr, s.ops = addr, ops
	if !waitFor(30*time.Second, func() bool { return httpOK("http://" + s.ops + "/health/ready") }) {
		s.stop()
		return nil, fmt.Errorf("%s not ready (log: %s, which the bench removes unless -keep; it ends: %s)", name, s.log.Name(), logTail(s.log.Name()))
	}
	return s, nil
}

// logTail is the last lines of a server's log, for an error that names it:
// the bench removes its directory at the end.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-3):], " | ")
}
