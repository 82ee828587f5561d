package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/valyala/fasthttp"

	"github.com/rig-go/rig/internal/rig"
)

// Publish is one publishing phase.
type Publish struct {
	Name        string        `json:"name"`
	Via         string        `json:"via"`         // http (ingest), nats (JetStream, straight) or centrifugo (its HTTP API)
	Batch       int           `json:"batch"`       // messages per request; 1: one JSON object
	Concurrency int           `json:"concurrency"` // requests in flight
	Rate        float64       `json:"rate"`        // messages/s, open loop; 0: closed loop, as fast as possible
	Messages    int           `json:"messages"`    // how many to send
	Duration    time.Duration `json:"duration"`    // stop sending after this, whatever is left
	Pad         int           `json:"pad"`         // payload padding in bytes
}

// publisher sends messages to users round-robin: message k goes to user
// k mod users. It counts, per user, the messages the server acknowledged.
type publisher struct {
	prefix string
	users  int
	acked  []atomic.Uint32
	ingest *fasthttp.HostClient
	apiKey string // Centrifugo's http_api.key, for Via centrifugo
	js     jetstream.JetStream

	// Of the current phase: how late each request left against its
	// schedule (open loop), and when the first and last left.
	lag             atomicHist
	firstAt, lastAt atomic.Int64

	sent, stored, failed atomic.Int64
	errMu                sync.Mutex
	errs                 []string
}

func newPublisher(prefix string, users int, ingestAddr, apiKey string, nc *nats.Conn) (*publisher, error) {
	p := &publisher{prefix: prefix, users: users, acked: make([]atomic.Uint32, users), apiKey: apiKey}
	if ingestAddr != "" {
		p.ingest = &fasthttp.HostClient{Addr: ingestAddr, MaxConns: 4096, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, MaxIdemponentCallAttempts: 1}
	}
	if nc != nil {
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
		if err != nil {
			return nil, err
		}
		p.js = js
	}
	return p, nil
}

func (p *publisher) fail(err error) {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	if len(p.errs) < 5 {
		p.errs = append(p.errs, err.Error())
	}
}

// body appends message k: its send time first, so receivers find it at once.
func (p *publisher) body(b []byte, k int, pad string) ([]byte, int) {
	u := k % p.users
	b = append(b, `{"ts":`...)
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, `,"user":"`...)
	b = append(b, p.prefix...)
	b = strconv.AppendInt(b, int64(u), 10)
	b = append(b, '"')
	if pad != "" {
		b = append(b, `,"pad":"`...)
		b = append(b, pad...)
		b = append(b, '"')
	}
	return append(b, '}'), u
}

// run sends ph.Messages messages (or until ph.Duration) and returns when
// every request was answered.
func (p *publisher) run(ph Publish) {
	batch := max(ph.Batch, 1)
	requests := (ph.Messages + batch - 1) / batch
	jobs := make(chan job, 4096)
	p.lag.reset()
	p.firstAt.Store(0)
	p.lastAt.Store(0)
	deadline := time.Now().Add(ph.Duration)
	if ph.Duration == 0 {
		deadline = time.Now().Add(24 * time.Hour)
	}
	go func() {
		defer close(jobs)
		pace := newPacer()
		defer pace.done()
		start := time.Now()
		for r := range requests {
			due := time.Now()
			if ph.Rate > 0 {
				due = start.Add(time.Duration(float64(r*batch) / ph.Rate * float64(time.Second)))
				pace.until(due)
			}
			if time.Now().After(deadline) {
				return
			}
			jobs <- job{r: r, due: due}
		}
	}()
	pad := strings.Repeat("x", ph.Pad)
	var wg sync.WaitGroup
	for range max(ph.Concurrency, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch ph.Via {
			case "centrifugo":
				p.centrifugoLoop(jobs)
			case "nats":
				p.natsLoop(jobs, batch, ph.Messages, pad)
			default:
				p.httpLoop(jobs, batch, ph.Messages, pad)
			}
		}()
	}
	wg.Wait()
}

// job is one request to send, and when it was due.
type job struct {
	r   int
	due time.Time
}

// started records that a request leaves now, against its schedule: the
// lag shows whether the publishers kept up with an open-loop rate.
func (p *publisher) started(j job) {
	now := time.Now()
	p.lag.add(now.Sub(j.due))
	ns := now.UnixNano()
	p.firstAt.CompareAndSwap(0, ns)
	for {
		l := p.lastAt.Load()
		if l >= ns || p.lastAt.CompareAndSwap(l, ns) {
			return
		}
	}
}

func (p *publisher) httpLoop(jobs <-chan job, batch, total int, pad string) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + p.ingest.Addr + "/v1/messages")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	var b []byte
	var users []int
	for j := range jobs {
		r := j.r
		b, users = b[:0], users[:0]
		first, n := r*batch, min(batch, total-r*batch)
		if batch > 1 {
			b = append(b, '[')
		}
		for k := first; k < first+n; k++ {
			if k > first {
				b = append(b, ',')
			}
			var u int
			b, u = p.body(b, k, pad)
			users = append(users, u)
		}
		if batch > 1 {
			b = append(b, ']')
		}
		req.SetBodyRaw(b)
		p.started(j)
		p.sent.Add(int64(n))
		err := p.ingest.Do(req, resp)
		if err == nil && resp.StatusCode() != fasthttp.StatusAccepted {
			err = fmt.Errorf("POST /v1/messages: %d %s", resp.StatusCode(), resp.Body())
		}
		if err != nil {
			p.failed.Add(int64(n))
			p.fail(err)
			continue
		}
		p.stored.Add(int64(n))
		for _, u := range users {
			p.acked[u].Add(1)
		}
	}
}

// centrifugoLoop publishes one message per request through Centrifugo's
// HTTP API, to the user's personal channel (#user), the same payload as
// through ingest. Centrifugo answers 200 also to a command it refused,
// with {"error":...} in the body.
func (p *publisher) centrifugoLoop(jobs <-chan job) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + p.ingest.Addr + "/api/publish")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set("X-API-Key", p.apiKey)
	var b []byte
	for j := range jobs {
		b = append(b[:0], `{"channel":"#`...)
		b = append(b, p.prefix...)
		b = strconv.AppendInt(b, int64(j.r%p.users), 10)
		b = append(b, `","data":`...)
		var u int
		b, u = p.body(b, j.r, "")
		b = append(b, '}')
		req.SetBodyRaw(b)
		p.started(j)
		p.sent.Add(1)
		err := p.ingest.Do(req, resp)
		if err == nil && (resp.StatusCode() != fasthttp.StatusOK || !bytes.HasPrefix(resp.Body(), []byte(`{"result"`))) {
			err = fmt.Errorf("POST /api/publish: %d %s", resp.StatusCode(), resp.Body())
		}
		if err != nil {
			p.failed.Add(1)
			p.fail(err)
			continue
		}
		p.stored.Add(1)
		p.acked[u].Add(1)
	}
}

// natsLoop publishes straight to JetStream, as a back-end speaking NATS
// would, with an event id; a batch is published at once and awaited.
func (p *publisher) natsLoop(jobs <-chan job, batch, total int, pad string) {
	type pending struct {
		f jetstream.PubAckFuture
		u int
	}
	var pend []pending
	for j := range jobs {
		r := j.r
		p.started(j)
		pend = pend[:0]
		first, n := r*batch, min(batch, total-r*batch)
		for k := first; k < first+n; k++ {
			data, u := p.body(nil, k, pad)
			m := &nats.Msg{Subject: rig.SubjectPrefix + rig.SubjectToken(p.prefix+strconv.Itoa(u)), Data: data,
				Header: nats.Header{"Nats-Msg-Id": []string{ulid.Make().String()}}}
			p.sent.Add(1)
			f, err := p.js.PublishMsgAsync(m)
			if err != nil {
				p.failed.Add(1)
				p.fail(err)
				continue
			}
			pend = append(pend, pending{f, u})
		}
		for _, pd := range pend {
			select {
			case <-pd.f.Ok():
				p.stored.Add(1)
				p.acked[pd.u].Add(1)
			case err := <-pd.f.Err():
				p.failed.Add(1)
				p.fail(err)
			case <-time.After(30 * time.Second):
				p.failed.Add(1)
				p.fail(errors.New("no JetStream acknowledgement within 30s"))
			}
		}
	}
}

// connectNATS connects the publisher straight to NATS.
func connectNATS(url string) (*nats.Conn, error) {
	nc, err := nats.Connect(url, nats.Name("rig-loadgen"))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}
