package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Hostile clients dial from loopback addresses other than 127.0.0.1
// (127.0.0.2, ...) and from source ports in [srcPortLow, srcPortHigh),
// below the ephemeral range, as the load generator does: tens of thousands
// of connections, and their ends, then take no port another test or
// server may pick. Each connection closes with a reset, leaving no
// TIME_WAIT behind.
const (
	srcPortLow  = 10000
	srcPortHigh = 20000
)

var srcPort atomic.Int64

func init() { srcPort.Store(rand.Int64N(srcPortHigh - srcPortLow)) }

// DialFrom opens a TCP connection to addr from the loopback address src.
func DialFrom(src, addr string, timeout time.Duration) (net.Conn, error) {
	return dialFromPort(src, addr, srcPortLow+int(srcPort.Add(1)%(srcPortHigh-srcPortLow)), timeout)
}

// dialFromPort dials from src:port, moving on to other ports while that
// one is taken (by another process, or a test's connection still open).
func dialFromPort(src, addr string, port int, timeout time.Duration) (net.Conn, error) {
	var err error
	for attempt := range 8 {
		p := srcPortLow + (port-srcPortLow+attempt*3331)%(srcPortHigh-srcPortLow)
		d := net.Dialer{Timeout: timeout, Control: reuseAddr, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src), Port: p}}
		var c net.Conn
		if c, err = d.Dial("tcp", addr); err == nil {
			_ = c.(*net.TCPConn).SetLinger(0)
			return c, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return nil, err
		}
	}
	return nil, err
}

func reuseAddr(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	return errors.Join(err, serr)
}

// ClientFrom is an HTTP client whose every request comes from src on a
// connection of its own.
func ClientFrom(src string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
			return DialFrom(src, addr, 5*time.Second)
		},
	}}
}

// DialSSEWith opens an SSE stream with client. Unlike DialSSE it reports
// a failed connection (the edge closed it at once) as an error, and
// waits for the connected event of a 200.
func DialSSEWith(t testing.TB, client *http.Client, url string, header http.Header) (*SSE, Response, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, Response{}, err
	}
	if resp.StatusCode != 200 {
		defer cancel()
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return nil, Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
	}
	s := &SSE{Resp: resp, Events: make(chan SSEEvent, 1000), cancel: cancel, done: make(chan struct{})}
	go s.read()
	t.Cleanup(s.Close)
	select {
	case ev, ok := <-s.Events:
		if !ok || ev.Event != "connected" {
			s.Close()
			return nil, Response{Status: 200}, fmt.Errorf("stream began with %+v, not the connected event", ev)
		}
	case <-time.After(5 * time.Second):
		s.Close()
		return nil, Response{Status: 200}, errors.New("no connected event within 5s")
	}
	return s, Response{Status: 200, Header: resp.Header}, nil
}

// closedWithin reports whether the peer closes c (or resets it) within d,
// sending nothing or an error answer first.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	var buf [512]byte
	for {
		_, err := c.Read(buf[:])
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

// Flood is many idle TCP connections held open.
type Flood struct {
	mu     sync.Mutex
	Conns  []net.Conn
	Failed int
	Err    error // the first dial error
}

// StartFlood dials n connections to addr from srcs, in turn, concurrently,
// and returns once every dial has ended. The connections send nothing.
func StartFlood(t testing.TB, addr string, srcs []string, n int) *Flood {
	t.Helper()
	f := &Flood{}
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := DialFrom(srcs[i%len(srcs)], addr, 5*time.Second)
				f.mu.Lock()
				if err != nil {
					f.Failed++
					if f.Err == nil {
						f.Err = err
					}
				} else {
					f.Conns = append(f.Conns, c)
				}
				f.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Cleanup(f.Close)
	return f
}

// Closed counts the flood's connections that the peer closes within d.
func (f *Flood) Closed(d time.Duration) int {
	var n atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, c := range f.Conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if closedWithin(c, d) {
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(n.Load())
}

// Close ends the flood.
func (f *Flood) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.Conns {
		c.Close()
	}
	f.Conns = nil
}

// Open files of a process, and the most it may have.
func fdCount(pid int) int {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

func fdLimit(t testing.TB, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(line)
			n, err := strconv.Atoi(f[3])
			if err != nil {
				t.Fatalf("limits line %q", line)
			}
			return n
		}
	}
	t.Fatalf("no open-file limit in /proc/%d/limits", pid)
	return 0
}

// FDWatch samples a process's open files until Stop, keeping the most seen.
type FDWatch struct {
	pid  int
	most atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func WatchFDs(pid int) *FDWatch {
	w := &FDWatch{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if n := int64(fdCount(pid)); n > w.most.Load() {
				w.most.Store(n)
			}
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// Most stops the watch and returns the most open files seen.
func (w *FDWatch) Most() int {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	return int(w.most.Load())
}

func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// A flooder is this test binary run again as a process that only holds
// idle connections: one process may hold at most about 19,000, and the
// full-size flood is more. It is configured by the environment, prints
// "dialed <ok> failed <n> [<first error>]" once it holds them, and exits
// (closing them all) when its stdin closes.
const flooderEnv = "RIG_E2E_FLOODER"

func init() {
	if target := os.Getenv(flooderEnv); target != "" {
		os.Exit(runFlooder(target))
	}
}

func runFlooder(target string) int {
	srcs := strings.Split(os.Getenv(flooderEnv+"_SRC"), ",")
	n, _ := strconv.Atoi(os.Getenv(flooderEnv + "_N"))
	conns := make([]net.Conn, n)
	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				// Connection i has source port srcPortLow + i/len(srcs) on
				// its address: no two of the flood share one.
				c, err := dialFromPort(srcs[i%len(srcs)], target, srcPortLow+i/len(srcs), 10*time.Second)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	msg, _ := firstErr.Load().(string)
	fmt.Printf("dialed %d failed %d %s\n", n-int(failed.Load()), failed.Load(), msg)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// Flooder is a flooder process.
type Flooder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// StartFlooder starts a process holding n idle connections to addr from srcs.
func StartFlooder(t testing.TB, addr string, srcs []string, n int) *Flooder {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), flooderEnv+"="+addr, flooderEnv+"_SRC="+strings.Join(srcs, ","), flooderEnv+"_N="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &Flooder{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(f.Stop)
	return f
}

// Wait waits up to timeout for the flooder to hold its connections and
// returns how many it dialed and how many failed.
func (f *Flooder) Wait(t testing.TB, timeout time.Duration) (dialed, failed int, firstErr string) {
	t.Helper()
	type line struct {
		s   string
		err error
	}
	ch := make(chan line, 1)
	go func() {
		s, err := f.out.ReadString('\n')
		ch <- line{s, err}
	}()
	select {
	case l := <-ch:
		if l.err != nil {
			t.Fatalf("flooder: %v", l.err)
		}
		fields := strings.SplitN(strings.TrimSpace(l.s), " ", 5)
		if len(fields) < 4 {
			t.Fatalf("flooder said %q", l.s)
		}
		dialed, _ = strconv.Atoi(fields[1])
		failed, _ = strconv.Atoi(fields[3])
		if len(fields) == 5 {
			firstErr = fields[4]
		}
		return dialed, failed, firstErr
	case <-time.After(timeout):
		t.Fatalf("flooder did not hold its connections within %s", timeout)
	}
	return 0, 0, ""
}

// Stop ends the flooder: it closes its connections and exits.
func (f *Flooder) Stop() {
	if f.stdin != nil {
		f.stdin.Close()
		f.stdin = nil
		done := make(chan struct{})
		go func() { _ = f.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = f.cmd.Process.Kill()
			<-done
		}
	}
}

// metric reads one sample of an edge's /metrics (0 if it is absent).
func metric(t testing.TB, s *Server, name string) float64 {
	t.Helper()
	return Scrape(t, s.OpsURL+"/metrics")[name]
}
