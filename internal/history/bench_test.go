package history

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/rig"
)

// The benchmarks compare the two ways to read a user's history: batched
// direct gets and an ephemeral consumer per read, against in-process
// nats-servers with a file store: one, or three clustered (-replicated).
// docs/BENCHMARKS.md has the figures. Run them with
//
//	go test ./internal/history -run '^$' -bench . -benchtime 20x

const benchMessages = 1000

// benchReplicated runs the benchmarks on a three-node cluster (R3 stream):
// go test ./internal/history -run '^$' -bench . -args -replicated
var benchReplicated bool

func init() {
	flag.BoolVar(&benchReplicated, "replicated", false, "benchmark against a 3-node cluster (R3 history stream)")
}

// benchHistory stores benchMessages messages of about size bytes for each of
// users users (bench-0, bench-1...), interleaved, behind other users'.
func benchHistory(b *testing.B, users, size int) *broker.Broker {
	b.Helper()
	var br *broker.Broker
	if benchReplicated {
		br = openCluster(b, 2*benchMessages, time.Hour)
	} else {
		br = openBrokerAge(b, 2*benchMessages, time.Hour)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pad := strings.Repeat("x", size)
	var acks []jetstream.PubAckFuture
	for i := range benchMessages {
		for u := range users {
			m := nats.NewMsg(rig.SubjectPrefix + fmt.Sprintf("bench-%d", u))
			m.Header.Set(broker.HeaderMsgID, fmt.Sprintf("b-%d-%d", u, i))
			m.Data = []byte(`{"n":` + fmt.Sprint(i) + `,"pad":"` + pad + `"}`)
			f, err := br.JS.PublishMsgAsync(m)
			if err != nil {
				b.Fatal(err)
			}
			acks = append(acks, f)
		}
	}
	select {
	case <-br.JS.PublishAsyncComplete():
	case <-ctx.Done():
		b.Fatal("publishing the benchmark's history timed out")
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
	return br
}

// readDirect (for the benchmarks) reads each user's messages with batched direct gets and
// merges them in stream order, unchecked:
// what readVerified does without asking the leader.
func (r *Reader) readDirect(ctx context.Context, users []string, start from) ([]*rig.Event, bool, error) {
	var events []*rig.Event
	for _, u := range users {
		evs, err := r.readUser(ctx, rig.SubjectPrefix+rig.SubjectToken(u), start)
		if err != nil {
			return nil, false, err
		}
		events = append(events, evs...)
	}
	if len(users) > 1 {
		slices.SortFunc(events, func(a, b *rig.Event) int { return cmpSeq(a.Seq, b.Seq) })
	}
	return events, false, nil
}

type benchReader func(ctx context.Context, user string) (int, error)

// benchReaders read a user's messages after position after: "direct" with
// batched direct gets (checked against the leader on a cluster, as
// readerFor does), "consumer" with a consumer per read. Since adds one
// STREAM.INFO request to either.
func benchReaders(br *broker.Broker, after uint64) map[string]benchReader {
	r := NewReader(br.JS, 1<<20)
	direct := r.readDirect
	if benchReplicated {
		direct = r.readVerified
	}
	count := func(read readFunc) benchReader {
		return func(ctx context.Context, user string) (int, error) {
			evs, _, err := read(ctx, []string{user}, from{seq: after + 1})
			return len(evs), err
		}
	}
	return map[string]benchReader{"direct": count(direct), "consumer": count(r.readConsumer)}
}

// BenchmarkReplay: one resume that replays 1,000 messages of ~100 bytes,
// and one that replays the last 10 (a client back after a short break).
func BenchmarkReplay(b *testing.B) {
	br := benchHistory(b, 1, 100)
	for _, n := range []int{benchMessages, 10} {
		for _, name := range []string{"direct", "consumer"} {
			read := benchReaders(br, uint64(benchMessages-n))[name]
			b.Run(fmt.Sprintf("%d/%s", n, name), func(b *testing.B) {
				for b.Loop() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					got, err := read(ctx, "bench-0")
					cancel()
					if err != nil || got != n {
						b.Fatalf("read %d of %d: %v", got, n, err)
					}
				}
			})
		}
	}
}

// BenchmarkConcurrentReplay150: 150 resumes at once, spread over 10 users
// with 1,000 messages each; one op is the whole round. The edge's
// HISTORY_READ_CONCURRENCY bounds how many run at once.
func BenchmarkConcurrentReplay150(b *testing.B) {
	br := benchHistory(b, 10, 100)
	for _, name := range []string{"direct", "consumer"} {
		read := benchReaders(br, 0)[name]
		for _, limit := range []int{8, 16, 32, 150} {
			b.Run(fmt.Sprintf("%s/limit=%d", name, limit), func(b *testing.B) {
				slots := make(chan struct{}, limit)
				var worst time.Duration
				for b.Loop() {
					var wg sync.WaitGroup
					var mu sync.Mutex
					var failed error
					for i := range 150 {
						wg.Add(1)
						go func() {
							defer wg.Done()
							start := time.Now()
							slots <- struct{}{}
							defer func() { <-slots }()
							ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
							defer cancel()
							n, err := read(ctx, fmt.Sprintf("bench-%d", i%10))
							mu.Lock()
							defer mu.Unlock()
							if err == nil && n != benchMessages {
								err = fmt.Errorf("read %d of %d", n, benchMessages)
							}
							if err != nil && failed == nil {
								failed = err
							}
							worst = max(worst, time.Since(start))
						}()
					}
					wg.Wait()
					if failed != nil {
						b.Fatal(failed)
					}
				}
				b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
			})
		}
	}
}
