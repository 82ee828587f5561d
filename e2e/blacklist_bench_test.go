package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	benchSessions = flag.Int("blacklist.sessions", 1000, "BenchmarkBlacklistKill: SSE sessions, spread over two edges")
	benchWorkers  = flag.Int("blacklist.workers", 16, "BenchmarkBlacklistKill: blacklist calls in flight at once")
)

// BenchmarkBlacklistKill measures, for each of -blacklist.sessions SSE
// sessions spread over two edges, the time from the start of its blacklist
// call (POST /v1/session-blacklist to ingest) to its connection closed as
// the client sees it (session_killed, then end of stream). The calls come
// from -blacklist.workers concurrent callers. It reports the p50, p99 and
// maximum of those times, and the time from the first call to the last
// connection closed. Run it alone:
//
//	go test ./e2e -run '^$' -bench BlacklistKill -benchtime 1x
func BenchmarkBlacklistKill(b *testing.B) {
	b.StopTimer() // ns/op is the blacklisting of all sessions, without setup
	// Production's log level: every kill logs, as every connection closed does.
	st := StartTwoEdges(b, map[string]string{"LOG_LEVEL": "info"}, map[string]string{"LOG_LEVEL": "info"})
	ingest := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *benchWorkers}, Timeout: 30 * time.Second}
	var all []time.Duration
	var lastClosed []time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		sessions := openBenchSessions(b, st, i, *benchSessions)
		b.StartTimer()
		lat, last := blacklistAll(b, ingest, st.Ingest.URL, sessions, *benchWorkers)
		all = append(all, lat...)
		lastClosed = append(lastClosed, last)
	}
	b.StopTimer()
	slices.Sort(all)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(all, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(all, 99)), "p99-ms")
	b.ReportMetric(ms(all[len(all)-1]), "max-ms")
	b.ReportMetric(ms(slices.Max(lastClosed)), "last-closed-ms")
	b.ReportMetric(float64(len(all)/b.N), "sessions")
}

// percentile returns the p-th percentile of sorted ds (nearest rank).
func percentile(ds []time.Duration, p int) time.Duration {
	i := (len(ds)*p + 99) / 100
	return ds[max(i-1, 0)]
}

// benchSession is one open SSE stream, read in the background.
type benchSession struct {
	jti    string
	conn   net.Conn
	killed bool      // saw session_killed
	closed time.Time // end of stream
	done   chan struct{}
}

// openBenchSessions opens n SSE streams, alternating between the edges,
// each with its own jti, and returns once each has its connected event.
// A raw connection per stream keeps the test process light.
func openBenchSessions(b *testing.B, st *TwoEdges, round, n int) []*benchSession {
	b.Helper()
	out := make([]*benchSession, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range out {
		edge := st.Edges()[i%2]
		s := &benchSession{jti: fmt.Sprintf("bench-%d-%d", round, i), done: make(chan struct{})}
		out[i] = s
		tok := Token(b, fmt.Sprintf("bench-user-%d", i%100), TokenOpts{JTI: s.jti})
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := s.open(edge, tok); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		for _, s := range out {
			s.conn.Close()
		}
	})
	return out
}

func (s *benchSession) open(edge *Server, token string) error {
	u, _ := url.Parse(edge.URL)
	c, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return err
	}
	s.conn = c
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /socket/sse?token=%s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", token, u.Host); err != nil {
		return err
	}
	r := bufio.NewReaderSize(c, 4096)
	status, err := r.ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		return fmt.Errorf("session %s: status %q %v", s.jti, status, err)
	}
	for { // through the connected event
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("session %s: %v", s.jti, err)
		}
		if strings.HasPrefix(line, "event: connected") {
			break
		}
	}
	_ = c.SetDeadline(time.Time{})
	go s.read(r)
	return nil
}

// read notes session_killed and the moment the stream ends.
func (s *benchSession) read(r *bufio.Reader) {
	defer close(s.done)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			s.closed = time.Now()
			return
		}
		if bytes.HasPrefix(line, []byte("event: session_killed")) {
			s.killed = true
		}
	}
}

// blacklistAll blacklists every session from workers concurrent callers
// and returns each session's time from call start to connection closed,
// and the time from the first call to the last close.
func blacklistAll(b *testing.B, client *http.Client, ingestURL string, sessions []*benchSession, workers int) ([]time.Duration, time.Duration) {
	b.Helper()
	starts := make([]time.Time, len(sessions))
	next := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	first := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				body, _ := json.Marshal(map[string]any{"sessionId": sessions[i].jti, "validityInSeconds": 300})
				starts[i] = time.Now()
				resp, err := client.Post(ingestURL+"/v1/session-blacklist", "application/json", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 201 {
					errs <- fmt.Errorf("blacklist %s: %d", sessions[i].jti, resp.StatusCode)
					return
				}
			}
		}()
	}
	for i := range sessions {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	lat := make([]time.Duration, len(sessions))
	var last time.Time
	for i, s := range sessions {
		select {
		case <-s.done:
		case <-deadline:
			b.Fatalf("session %s still open 30s after its blacklist call", s.jti)
		}
		if !s.killed {
			b.Fatalf("session %s ended without session_killed", s.jti)
		}
		lat[i] = s.closed.Sub(starts[i])
		if s.closed.After(last) {
			last = s.closed
		}
	}
	return lat, last.Sub(first)
}
