// Package metrics defines the Prometheus metrics of the edge and ingest
// binaries. Each binary gets its own registry with the Go runtime and
// process collectors; every labelled child is resolved once, here, so the
// hot path only adds to an atomic counter.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Transports are the edge's connection kinds, as labelled.
var Transports = []string{"sse", "websocket", "phoenix", "longpoll", "phoenix-longpoll"}

func newRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Handler serves a registry in the Prometheus text format.
func Handler(r *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(r, promhttp.HandlerOpts{})
}

// Transport holds the per-transport connection metrics.
type Transport struct {
	Open   prometheus.Gauge   // connections open now
	Opened prometheus.Counter // connections opened since start
}

// Edge is the edge's metrics.
type Edge struct {
	Registry *prometheus.Registry

	transports map[string]*Transport

	// MessagesReceived counts live messages the edge took from NATS.
	MessagesReceived prometheus.Counter
	// Duplicates counts live messages dropped because they had been
	// delivered already (a NATS redelivery, or one a refill got first).
	Duplicates prometheus.Counter
	// SlowConsumer counts the times NATS dropped messages for the edge
	// because a lane was full (each is refilled from history).
	SlowConsumer prometheus.Counter
	// SessionsKilled counts connections closed because their session was
	// blacklisted.
	SessionsKilled prometheus.Counter
	// Replays counts connections (and long-polls) served from history,
	// ReplayedMessages the messages they got from it.
	Replays          prometheus.Counter
	ReplayedMessages prometheus.Counter
	// Gaps counts gap events: a resume from an id history no longer holds.
	Gaps prometheus.Counter
	// GapFills counts refills of live messages the edge missed (dropped by
	// NATS, or sent while it was cut off), GapFilled the messages refilled.
	GapFills  prometheus.Counter
	GapFilled prometheus.Counter
	// HistoryReadFailures counts reads of history that failed (timed out
	// or NATS unreachable): each ended its connection, or answered 503, so
	// that the client retries from its own cursor.
	HistoryReadFailures prometheus.Counter

	// Refused counts connections a limit turned away, by reason.
	Refused Refusals
	// AcceptErrors counts failed accepts on the public port (such as
	// EMFILE: out of file descriptors), each followed by a pause.
	AcceptErrors prometheus.Counter
}

// Refusals are the reasons of rig_edge_connections_refused_total.
type Refusals struct {
	Capacity prometheus.Counter // MAX_CONNECTIONS: closed at accept
	IP       prometheus.Counter // MAX_CONNECTIONS_PER_IP
	IPRate   prometheus.Counter // MAX_CONNECTIONS_PER_MINUTE
	User     prometheus.Counter // MAX_CONNECTIONS_PER_USER
	Session  prometheus.Counter // MAX_CONNECTIONS_PER_SESSION
}

// NewEdge registers the edge's metrics. The functions give values read at
// scrape time: whether NATS is connected, and the clients' counters.
func NewEdge(natsConnected func() bool, clients ClientCounters) *Edge {
	r := newRegistry()
	f := factory{r}
	m := &Edge{Registry: r, transports: map[string]*Transport{}}
	open := f.gaugeVec("rig_edge_connections", "Client connections open now, by transport.", "transport")
	opened := f.counterVec("rig_edge_connections_opened_total", "Client connections opened, by transport (a long-poll request is one).", "transport")
	for _, t := range Transports {
		m.transports[t] = &Transport{Open: open.WithLabelValues(t), Opened: opened.WithLabelValues(t)}
	}
	m.MessagesReceived = f.counter("rig_edge_messages_received_total", "Live messages received from NATS.")
	m.Duplicates = f.counter("rig_edge_messages_duplicate_total", "Live messages dropped because they were already delivered.")
	m.SlowConsumer = f.counter("rig_edge_nats_slow_consumer_total", "Times NATS dropped messages for this edge because it fell behind (refilled from history).")
	m.SessionsKilled = f.counter("rig_edge_sessions_killed_total", "Connections closed because their session was blacklisted.")
	m.Replays = f.counter("rig_edge_history_replays_total", "Connections and long-polls that resumed from history.")
	m.ReplayedMessages = f.counter("rig_edge_history_replayed_messages_total", "Messages sent from history to resuming clients.")
	m.Gaps = f.counter("rig_edge_gap_events_total", "Gap events sent: a client resumed from an id no longer in history.")
	m.GapFills = f.counter("rig_edge_gap_fills_total", "Refills from history of live messages this edge missed.")
	m.GapFilled = f.counter("rig_edge_gap_filled_messages_total", "Messages refilled from history.")
	m.HistoryReadFailures = f.counter("rig_edge_history_read_failures_total", "Reads of history that failed; the client was told to come back with its cursor (connection closed, or 503).")
	f.counterFunc("rig_edge_messages_delivered_total", "Message events written to client connections.", clients.Delivered)
	f.counterFunc("rig_edge_events_dropped_total", "Events not queued because a client's queue was full (the client is closed).", clients.Dropped)
	f.counterFunc("rig_edge_slow_clients_closed_total", "Clients closed because their queue was full.", clients.SlowClosed)
	f.gaugeFunc("rig_nats_connected", "1 while the connection to NATS is up.", boolFloat(natsConnected))
	refused := f.counterVec("rig_edge_connections_refused_total", "Connections refused by a limit, by reason: capacity (MAX_CONNECTIONS), ip (MAX_CONNECTIONS_PER_IP), ip_rate (MAX_CONNECTIONS_PER_MINUTE), user, session.", "reason")
	m.Refused = Refusals{Capacity: refused.WithLabelValues("capacity"), IP: refused.WithLabelValues("ip"),
		IPRate: refused.WithLabelValues("ip_rate"), User: refused.WithLabelValues("user"), Session: refused.WithLabelValues("session")}
	m.AcceptErrors = f.counter("rig_edge_accept_errors_total", "Failed accepts on the public port (such as EMFILE), each followed by a pause.")
	return m
}

// TCP registers the public port's connection gauges: open reads the TCP
// connections open now, max is the cap in force (MAX_CONNECTIONS).
func (m *Edge) TCP(open func() int64, max int) {
	f := factory{m.Registry}
	f.gaugeFunc("rig_edge_tcp_connections", "TCP connections open on the public port now, requests and streams alike.", func() float64 { return float64(open()) })
	f.gaugeFunc("rig_edge_max_connections", "Most TCP connections the public port holds (MAX_CONNECTIONS, or derived from the open-file limit).", func() float64 { return float64(max) })
}

// HistoryReads registers the gauges of the history reader's queue: reads
// running now and reads waiting for their turn.
func (m *Edge) HistoryReads(inFlight, waiting func() int) {
	f := factory{m.Registry}
	f.gaugeFunc("rig_edge_history_reads_in_flight", "Reads of history running now.", func() float64 { return float64(inFlight()) })
	f.gaugeFunc("rig_edge_history_reads_waiting", "Reads of history waiting for their turn (HISTORY_READ_CONCURRENCY).", func() float64 { return float64(waiting()) })
}

// Transport returns the metrics of one transport. Connections call it once
// when they open, not per message.
func (m *Edge) Transport(name string) *Transport {
	if t := m.transports[name]; t != nil {
		return t
	}
	return m.transports["sse"] // unreachable: every transport is listed
}

// ClientCounters reads the counters every client adds to (see client.Counters).
type ClientCounters struct {
	Delivered, Dropped, SlowClosed func() uint64
}

// Ingest is ingest's metrics.
type Ingest struct {
	Registry *prometheus.Registry

	// Stored, Rejected and Failed count posted messages: stored in
	// history (202), refused as invalid (4xx), not stored (503).
	Stored, Rejected, Failed prometheus.Counter
	// Duplicates counts retries of a message sent with an Idempotency-Key
	// that was stored already (202 with the first's id, not stored again).
	Duplicates prometheus.Counter
	// Batches counts POST /v1/messages requests with a JSON array.
	Batches prometheus.Counter
	// PublishSeconds is the time from handing a message to JetStream to
	// its acknowledgement (stored).
	PublishSeconds prometheus.Histogram
	// BlacklistCalls counts sessions blacklisted through ingest.
	BlacklistCalls prometheus.Counter
}

// NewIngest registers ingest's metrics; pending reads the publishes
// waiting for their acknowledgement.
func NewIngest(natsConnected func() bool, pending func() int) *Ingest {
	r := newRegistry()
	f := factory{r}
	msgs := f.counterVec("rig_ingest_messages_total", "Posted messages by result: stored (202), duplicate (202 to a retry with an Idempotency-Key, not stored again), rejected (4xx), failed (503).", "result")
	m := &Ingest{
		Registry:       r,
		Stored:         msgs.WithLabelValues("stored"),
		Rejected:       msgs.WithLabelValues("rejected"),
		Failed:         msgs.WithLabelValues("failed"),
		Duplicates:     msgs.WithLabelValues("duplicate"),
		Batches:        f.counter("rig_ingest_batches_total", "POST /v1/messages requests carrying a JSON array of messages."),
		BlacklistCalls: f.counter("rig_ingest_blacklist_calls_total", "Sessions blacklisted through ingest."),
	}
	m.PublishSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "rig_ingest_publish_seconds",
		Help:    "Time from handing a message to JetStream to its acknowledgement.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	r.MustRegister(m.PublishSeconds)
	f.gaugeFunc("rig_ingest_publish_in_flight", "Publishes waiting for JetStream's acknowledgement.", func() float64 { return float64(pending()) })
	f.gaugeFunc("rig_nats_connected", "1 while the connection to NATS is up.", boolFloat(natsConnected))
	return m
}

// Since observes the time since start in h.
func Since(h prometheus.Observer, start time.Time) { h.Observe(time.Since(start).Seconds()) }

type factory struct{ r *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.r.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.r.MustRegister(c)
	return c
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.r.MustRegister(g)
	return g
}

func (f factory) counterFunc(name, help string, fn func() uint64) {
	f.r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(fn()) }))
}

func (f factory) gaugeFunc(name, help string, fn func() float64) {
	f.r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

func boolFloat(fn func() bool) func() float64 {
	return func() float64 {
		if fn() {
			return 1
		}
		return 0
	}
}

// TLS registers the public port's certificate metrics (TLS_CERT_FILE):
// notAfter reads the expiry of the certificate served now; the counters
// returned count the reloads of new certificate files, and the changes
// refused (the previous certificate kept).
func (m *Edge) TLS(notAfter func() time.Time) (reloaded, refused prometheus.Counter) {
	f := factory{m.Registry}
	f.gaugeFunc("rig_edge_tls_certificate_expiry_timestamp_seconds", "When the public port's TLS certificate served now expires (Unix time).", func() float64 { return float64(notAfter().Unix()) })
	reloads := f.counterVec("rig_edge_tls_reloads_total", "Changes of TLS_CERT_FILE / TLS_KEY_FILE: reloaded (new connections get the new certificate), refused (not a valid pair; the previous one kept).", "result")
	return reloads.WithLabelValues("reloaded"), reloads.WithLabelValues("refused")
}
