package main

import (
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
	Via         string        `json:"via"`         // http (ingest) or nats (JetStream, straight)
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
	js     jetstream.JetStream

	sent, stored, failed atomic.Int64
	errMu                sync.Mutex
	errs                 []string
}

func newPublisher(prefix string, users int, ingestAddr string, nc *nats.Conn) (*publisher, error) {
	p := &publisher{prefix: prefix, users: users, acked: make([]atomic.Uint32, users)}
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
	jobs := make(chan int, 4096) // request numbers
	deadline := time.Now().Add(ph.Duration)
	if ph.Duration == 0 {
		deadline = time.Now().Add(24 * time.Hour)
	}
	go func() {
		defer close(jobs)
		start := time.Now()
		for r := range requests {
			if ph.Rate > 0 {
				due := start.Add(time.Duration(float64(r*batch) / ph.Rate * float64(time.Second)))
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
			}
			if time.Now().After(deadline) {
				return
			}
			jobs <- r
		}
	}()
	pad := strings.Repeat("x", ph.Pad)
	var wg sync.WaitGroup
	for range max(ph.Concurrency, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch ph.Via {
			case "nats":
				p.natsLoop(jobs, batch, ph.Messages, pad)
			default:
				p.httpLoop(jobs, batch, ph.Messages, pad)
			}
		}()
	}
	wg.Wait()
}

func (p *publisher) httpLoop(jobs <-chan int, batch, total int, pad string) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + p.ingest.Addr + "/v1/messages")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	var b []byte
	var users []int
	for r := range jobs {
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

// natsLoop publishes straight to JetStream, as a back-end speaking NATS
// would, with an event id; a batch is published at once and awaited.
func (p *publisher) natsLoop(jobs <-chan int, batch, total int, pad string) {
	type pending struct {
		f jetstream.PubAckFuture
		u int
	}
	var pend []pending
	for r := range jobs {
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
