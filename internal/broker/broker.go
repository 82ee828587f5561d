// Package broker connects RIG-Go to NATS: the optional in-process server of
// single-node mode, the client connection with its reconnect policy, and
// the JetStream history stream every message for a user is stored in.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/ready"
	"github.com/rig-go/rig/internal/retry"
	"github.com/rig-go/rig/internal/rig"
)

// StreamName is the JetStream stream that keeps every user's recent messages.
const StreamName = "RIG_HISTORY"

// Headers of stored and republished messages.
const (
	// HeaderMsgID is JetStream's de-duplication id, and the event id
	// unless HeaderEventID is set (see EventIDOf).
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderEventID carries the event id of a message whose HeaderMsgID
	// is not one: ingest's messages sent with an Idempotency-Key, whose
	// de-duplication id is derived from the user and the key.
	HeaderEventID = "Rig-Event-Id"
	// HeaderSequence is a republished message's stream sequence.
	HeaderSequence = "Nats-Sequence"
	// HeaderLastSequence is the sequence of the previous message on the
	// same subject when a republished message was stored (0: none).
	HeaderLastSequence = "Nats-Last-Sequence"
	// HeaderSubject is the subject a republished message was published on.
	HeaderSubject = "Nats-Subject"
	// HeaderReceipt asks every edge that writes the message to a
	// connection for a delivery receipt (rig.Receipt) on the subject it
	// names, which must be a valid rig.ValidReceiptSubject; any other
	// value is ignored. Stored with the message, so replays carry it too:
	// edges send receipts only for live deliveries.
	HeaderReceipt = "Rig-Receipt"
)

// AttemptTimeout bounds one JetStream call (creating a stream or bucket,
// starting a watch, reading a key). On a fresh cluster, of several
// processes creating the same stream at once one succeeds and the others
// hang until their context ends; a short attempt and a retry fixes it.
const AttemptTimeout = 3 * time.Second

// Broker is a connection to NATS with the history stream ensured.
type Broker struct {
	NC *nats.Conn
	JS jetstream.JetStream

	cfg      config.NATS
	log      *slog.Logger
	embedded *server.Server
	stream   *ready.State // the history stream: ensured, or why not
	replicas atomic.Int32 // replicas the stream was ensured with
	closing  sync.Once
	closed   atomic.Bool // Close was called: the connection's end is no news

	// lost is closed when nats.go closed the connection by itself (it
	// gave up on credentials NATS refused twice), lostErr saying why.
	lost     chan struct{}
	lostOnce sync.Once
	lostErr  error
	refusal  atomic.Value // the last refusal logged, to log each once
	// everConnected: the connection was up once; before, a refusal ends
	// the process (refused says why).
	everConnected atomic.Bool
	refused       atomic.Pointer[error]
	denials       denials
	urls          string

	hooksMu     sync.Mutex
	onReconnect []func()
	onSlow      []func(sub *nats.Subscription)
}

// OnReconnect registers fn to run (on its own goroutine) each time the
// connection to NATS comes back.
func (b *Broker) OnReconnect(fn func()) {
	b.hooksMu.Lock()
	defer b.hooksMu.Unlock()
	b.onReconnect = append(b.onReconnect, fn)
}

// OnSlowConsumer registers fn to run when NATS dropped messages for sub
// because its pending queue was full.
func (b *Broker) OnSlowConsumer(fn func(sub *nats.Subscription)) {
	b.hooksMu.Lock()
	defer b.hooksMu.Unlock()
	b.onSlow = append(b.onSlow, fn)
}

func (b *Broker) reconnected() {
	b.hooksMu.Lock()
	fns := append([]func(){}, b.onReconnect...)
	b.hooksMu.Unlock()
	for _, fn := range fns {
		go fn()
	}
}

func (b *Broker) slowConsumer(sub *nats.Subscription) {
	b.hooksMu.Lock()
	fns := append([]func(*nats.Subscription){}, b.onSlow...)
	b.hooksMu.Unlock()
	for _, fn := range fns {
		fn(sub)
	}
}

// Open starts the embedded server when configured and connects; Run
// ensures the history stream. Connecting does not wait for NATS: a binary
// starts, reports not ready, and becomes ready when NATS is. It fails only
// for what waiting cannot fix: NATS refusing the credentials or the TLS
// (see connectError), at the first attempt.
func Open(cfg config.NATS, log *slog.Logger, opts ...nats.Option) (*Broker, error) {
	b := &Broker{cfg: cfg, log: log, stream: ready.New("connecting to NATS"), lost: make(chan struct{})}
	urls := strings.Join(cfg.URLs, ",")
	if cfg.Embedded {
		ns, err := StartEmbedded(cfg, log)
		if err != nil {
			return nil, err
		}
		b.embedded = ns
		urls = ns.ClientURL()
	}
	b.urls = urls
	security, err := securityOptions(cfg)
	if err != nil {
		b.shutdownEmbedded()
		return nil, err
	}
	base := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if !nc.IsClosed() {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.everConnected.Store(true)
			log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted())
			b.reconnected()
		}),
		// Credentials or TLS that stop working while the process runs
		// (a rotated password, an expired certificate): said once per
		// change of reason, not at every attempt. nats.go gives up after
		// the same refusal twice from a server, which ends Run.
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			e := connectError(cfg, urls, err)
			if e == nil {
				return
			}
			if !b.everConnected.Load() {
				// Still starting (the first attempt failed otherwise,
				// say the server closed the connection before its TLS
				// alert arrived): as good as a refusal at the first.
				b.refused.Store(&e)
				go nc.Close()
				return
			}
			if b.refusal.Swap(e.Error()) != e.Error() {
				log.Error("NATS refuses this connection", "err", e)
			}
		}),
		nats.ConnectHandler(func(*nats.Conn) { b.everConnected.Store(true) }),
		nats.ClosedHandler(func(nc *nats.Conn) {
			b.lostOnce.Do(func() {
				b.lostErr = nc.LastError()
				close(b.lost)
			})
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			if errors.Is(err, nats.ErrSlowConsumer) && sub != nil {
				log.Warn("NATS dropped messages for a slow subscription; refilling from history", "subject", subject)
				b.slowConsumer(sub)
				return
			}
			if b.denials.denied(err) {
				return // the caller waiting for it says what it means
			}
			log.Error("NATS error", "err", err, "subject", subject)
		}),
	}
	base = append(base, security...)
	// The first attempt does not retry: NATS refusing the credentials or
	// the TLS at start is one line and an exit, not a process that stays
	// unready. NATS not being there yet is retried in the background.
	nc, err := nats.Connect(urls, append(base, opts...)...)
	if err == nil {
		b.everConnected.Store(true)
	} else {
		if e := connectError(cfg, urls, err); e != nil {
			b.shutdownEmbedded()
			return nil, e
		}
		log.Warn("NATS not reachable yet, retrying", "url", urls, "err", err)
		nc, err = nats.Connect(urls, append(append(base, nats.RetryOnFailedConnect(true)), opts...)...)
	}
	if err != nil {
		b.shutdownEmbedded()
		return nil, fmt.Errorf("connect to NATS at %s: %w", urls, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		b.shutdownEmbedded()
		return nil, fmt.Errorf("JetStream: %w", err)
	}
	b.NC, b.JS = nc, js
	return b, nil
}

// Run ensures the history stream, retrying until it exists, then holds the
// connection until ctx ends and closes it (and the embedded server): the
// broker is the last part of a process to stop.
func (b *Broker) Run(ctx context.Context) error {
	defer b.Close()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-b.lost:
			stop()
		case <-ctx.Done():
		}
	}()
	err := retry.Do(ctx, b.EnsureStream, func(err error) {
		if b.stream.Fail(fmt.Errorf("history stream not ready: %w", err)) {
			b.log.Warn("history stream not ready, retrying", "err", err)
		}
	})
	if err == nil {
		b.stream.Ready()
		b.log.Info("history stream ready", "stream", StreamName, "replicas", b.Replicas(),
			"max_age", b.cfg.MaxAge.String(), "max_per_user", b.cfg.MaxPerUser)
	}
	<-ctx.Done()
	select {
	case <-b.lost:
		if !b.closed.Load() {
			return fmt.Errorf("NATS connection closed for good: %w", b.lostCause())
		}
	default:
	}
	return nil
}

// lostCause says why nats.go closed the connection: as connectError puts
// it when it is a refusal.
func (b *Broker) lostCause() error {
	if e := b.refused.Load(); e != nil {
		return *e
	}
	err := b.lostErr
	if err == nil {
		return errors.New("closed by the client library")
	}
	if e := connectError(b.cfg, b.urls, err); e != nil {
		return e
	}
	return err
}

// Ready returns nil when NATS is connected and the history stream exists,
// else an error saying what is missing.
func (b *Broker) Ready() error {
	if !b.NC.IsConnected() {
		return fmt.Errorf("NATS not connected (%s)", b.NC.Status())
	}
	return b.stream.Err()
}

// Connected reports whether the NATS connection is up.
func (b *Broker) Connected() bool { return b.NC.IsConnected() }

// Replicas returns the replica count the history stream was set up with,
// which other JetStream assets (the blacklist bucket) follow.
func (b *Broker) Replicas() int { return int(b.replicas.Load()) }

// WaitReady blocks until Ready returns nil or ctx ends.
func (b *Broker) WaitReady(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		err := b.Ready()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Close drains nothing: it closes the connection and stops the embedded
// server. Run does it when it ends; a broker that never ran is closed so.
func (b *Broker) Close() {
	b.closing.Do(func() {
		b.closed.Store(true)
		b.NC.Close()
		b.shutdownEmbedded()
	})
}

func (b *Broker) shutdownEmbedded() {
	if b.embedded != nil {
		b.embedded.Shutdown()
		b.embedded.WaitForShutdown()
	}
}

// StreamConfig is the history stream's configuration for a replica count.
func StreamConfig(cfg config.NATS, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "RIG-Go: recent messages per user, for resume",
		// One token: a publish to user.a.b (a user id not encoded into
		// one token) gets an error from JetStream instead of being
		// stored for a subject no edge ever reads.
		Subjects:          []string{rig.SubjectPrefix + "*"},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Discard:           jetstream.DiscardOld,
		MaxAge:            cfg.MaxAge,
		MaxMsgsPerSubject: int64(cfg.MaxPerUser),
		Duplicates:        dedupWindow(cfg),
		Replicas:          replicas,
		AllowDirect:       true,
		// Edges receive what the stream stored, in stream order, with its
		// sequence: see rig.LiveSubjectPrefix.
		// (A "*" destination is refused for a "*" source; the transform
		// names the token.)
		RePublish: &jetstream.RePublish{
			Source:      rig.SubjectPrefix + "*",
			Destination: rig.LiveSubjectPrefix + rig.SubjectPrefix + "{{wildcard(1)}}",
		},
	}
}

// dedupWindow is IDEMPOTENCY_WINDOW, or for a config not parsed from
// settings (tests) its default, 30s or MaxAge when shorter.
func dedupWindow(cfg config.NATS) time.Duration {
	if cfg.IdempotencyWindow > 0 {
		return cfg.IdempotencyWindow
	}
	return min(cfg.MaxAge, 30*time.Second)
}

// EnsureStream creates or updates the history stream once, with the
// replica count the cluster calls for (see replicasFor). Updating moves a
// stream made by an older version (subjects user.>) to user.* in place:
// its stored messages stay.
func (b *Broker) EnsureStream(ctx context.Context) error {
	if !b.NC.IsConnected() {
		return fmt.Errorf("NATS not connected (%s)", b.NC.Status())
	}
	r, err := b.replicasFor(ctx)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, AttemptTimeout)
	defer cancel()
	actx, unwatch := b.denials.watch(actx, b.streamAPI(StreamName))
	defer unwatch()
	_, err = b.JS.CreateOrUpdateStream(actx, StreamConfig(b.cfg, r))
	if err != nil && b.cfg.Replicas == 0 && r > 1 && insufficient(err) {
		r = 1
		_, err = b.JS.CreateOrUpdateStream(actx, StreamConfig(b.cfg, r))
	}
	if d := deniedCause(actx); d != nil {
		return b.existingStream(ctx, d)
	}
	if err != nil {
		return fmt.Errorf("create or update stream %s (replicas %d): %w", StreamName, r, err)
	}
	b.replicas.Store(int32(r))
	return nil
}

// existingStream takes the history stream as it is, for a user NATS does
// not allow to create or change it (an edge with least privilege: ingest
// creates it).
func (b *Broker) existingStream(ctx context.Context, denied *DeniedError) error {
	actx, cancel := context.WithTimeout(ctx, AttemptTimeout)
	defer cancel()
	s, err := b.JS.Stream(actx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s does not exist yet, and %w: waiting for ingest (or another user allowed to) to create it", StreamName, denied)
	}
	if err != nil {
		return fmt.Errorf("look up stream %s (%w): %w", StreamName, denied, err)
	}
	b.replicas.Store(int32(max(s.CachedInfo().Config.Replicas, 1)))
	b.log.Info("using the history stream as it is: this NATS user may not create or update it", "stream", StreamName, "denied", denied.Subject)
	return nil
}

// replicasFor returns NATS_REPLICAS when set; else 1 on a server that is not
// clustered, and 3 in a cluster (EnsureStream falls back to 1 when the
// cluster has fewer than three JetStream servers).
func (b *Broker) replicasFor(ctx context.Context) (int, error) {
	if b.cfg.Replicas > 0 {
		return b.cfg.Replicas, nil
	}
	if b.NC.ConnectedClusterName() == "" {
		return 1, nil
	}
	// An existing stream keeps its replica count: every process of one
	// deployment then agrees, whichever created it.
	actx, cancel := context.WithTimeout(ctx, AttemptTimeout)
	defer cancel()
	if s, err := b.JS.Stream(actx, StreamName); err == nil {
		if r := s.CachedInfo().Config.Replicas; r > 0 {
			return r, nil
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, fmt.Errorf("look up stream %s: %w", StreamName, err)
	}
	return 3, nil
}

func insufficient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == 10023 || // insufficient resources
			apiErr.ErrorCode == 10074 // replicas > 1 not supported in non-clustered mode
	}
	return strings.Contains(err.Error(), "insufficient resources")
}

// StartEmbedded runs an in-process NATS server with JetStream, listening on
// cfg.Listen so other processes (ingest, back-ends, the nats CLI) can connect.
func StartEmbedded(cfg config.NATS, log *slog.Logger) (*server.Server, error) {
	host, portText, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("NATS_LISTEN=%q: %w", cfg.Listen, err)
	}
	port, _ := strconv.Atoi(portText)
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:         "rig-embedded",
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		NoSigs:             true,
		MaxPayload:         8 << 20,
		MaxPending:         64 << 20,
		JetStreamMaxMemory: 256 << 20,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	ns.SetLoggerV2(&natsLogger{log: log.With("component", "nats-server")}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not start listening on %s (is the port in use?)", cfg.Listen)
	}
	log.Info("embedded NATS listening", "url", ns.ClientURL(), "store_dir", cfg.StoreDir)
	return ns, nil
}

// natsLogger sends the embedded server's log lines to slog.
type natsLogger struct{ log *slog.Logger }

func (l *natsLogger) Noticef(f string, v ...any) { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Warnf(f string, v ...any)   { l.log.Warn(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Fatalf(f string, v ...any)  { l.log.Error(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Errorf(f string, v ...any)  { l.log.Error(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Debugf(f string, v ...any)  { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Tracef(f string, v ...any)  { l.log.Debug(fmt.Sprintf(f, v...)) }

// EmbeddedURL returns the embedded server's client URL ("" when NATS is
// not embedded): where other processes connect, also when NATS_LISTEN
// asked for any free port.
func (b *Broker) EmbeddedURL() string {
	if b.embedded == nil {
		return ""
	}
	return b.embedded.ClientURL()
}
