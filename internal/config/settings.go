package config

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// NATS is how a binary reaches NATS, shared by edge and ingest.
type NATS struct {
	URLs       []string      // NATS_URL
	Embedded   bool          // NATS_EMBEDDED: run an in-process server
	Listen     string        // NATS_LISTEN: where the embedded server listens
	StoreDir   string        // NATS_STORE_DIR: JetStream store of the embedded server
	Replicas   int           // NATS_REPLICAS: 0 = follow the cluster
	MaxAge     time.Duration // HISTORY_MAX_AGE
	MaxPerUser int           // HISTORY_MAX_PER_USER
	Name       string        // NATS_CLIENT_NAME
	// IdempotencyWindow (IDEMPOTENCY_WINDOW) is the history stream's
	// de-duplication window: how long a Nats-Msg-Id (and so an ingest
	// Idempotency-Key) keeps a second message with it from being stored.
	// It is part of the stream's configuration, which edge and ingest
	// both ensure, so it sits here for both to agree on.
	IdempotencyWindow time.Duration

	Auth NATSAuth // how the connection authenticates; the zero value: anonymously
	TLS  NATSTLS  // the zero value: no TLS unless a URL says tls://
}

// defaultIdempotencyWindow is IDEMPOTENCY_WINDOW's default, when
// HISTORY_MAX_AGE is not shorter.
const defaultIdempotencyWindow = 30 * time.Second

// Log is how a binary logs.
type Log struct {
	Level  string // LOG_LEVEL
	Format string // LOG_FORMAT
}

func (s *Set) nats(n *NATS, name string) {
	s.List(&n.URLs, "NATS_URL", "nats://127.0.0.1:4222", "NATS server URL, or a comma-separated list of cluster members.")
	s.Bool(&n.Embedded, "NATS_EMBEDDED", false, "Run an in-process NATS server with JetStream (single-node mode); NATS_URL is then ignored.")
	s.HostPort(&n.Listen, "NATS_LISTEN", "127.0.0.1:4222", "Where the embedded NATS server listens for other processes (NATS_EMBEDDED only).")
	s.String(&n.StoreDir, "NATS_STORE_DIR", filepath.Join(os.TempDir(), "rig-go", "jetstream"), "JetStream store directory of the embedded NATS server.")
	s.Int(&n.Replicas, "NATS_REPLICAS", 0, 0, 5, "Replicas of the history stream, the blacklist bucket and the routes bucket; 0 follows the cluster (3 with three or more JetStream servers, else 1).")
	s.Duration(&n.MaxAge, "HISTORY_MAX_AGE", 5*time.Minute, time.Second, "How long messages stay in history for resume.")
	s.Int(&n.MaxPerUser, "HISTORY_MAX_PER_USER", 1000, 1, 1_000_000, "How many messages per user stay in history for resume.")
	s.String(&n.Name, "NATS_CLIENT_NAME", name, "Connection name shown by NATS monitoring.")
	s.Duration(&n.IdempotencyWindow, "IDEMPOTENCY_WINDOW", defaultIdempotencyWindow, 100*time.Millisecond, "How long the history stream remembers a message's id (Nats-Msg-Id, or ingest's Idempotency-Key) to drop a second message with it; at most HISTORY_MAX_AGE (the default follows a shorter HISTORY_MAX_AGE). Set the same on edges and ingest.")
	s.natsSecurity(n)
	s.Check(func() error {
		switch {
		case n.IdempotencyWindow <= n.MaxAge:
		case n.IdempotencyWindow == defaultIdempotencyWindow:
			// JetStream refuses a window longer than the stream's max age.
			n.IdempotencyWindow = n.MaxAge
		default:
			return &Error{Setting: "IDEMPOTENCY_WINDOW", Value: n.IdempotencyWindow.String(),
				Expected: fmt.Sprintf("a duration of at most HISTORY_MAX_AGE (%s): the history stream cannot remember an id longer than it keeps the message", n.MaxAge)}
		}
		return nil
	})
}

func (s *Set) log(l *Log) {
	s.Enum(&l.Level, "LOG_LEVEL", "info", []string{"debug", "info", "warn", "error"}, "Lowest level logged.")
	s.Enum(&l.Format, "LOG_FORMAT", "text", []string{"text", "json"}, "Log line format.")
}

// Edge is the edge binary's configuration.
type Edge struct {
	NATS NATS
	Log  Log
	JWT  JWT

	Proxy  Proxy  // the API gateway
	Limits Limits // of the public port

	TLS PublicTLS // of the public port; off unless both files are set

	Demo Demo // the demo page; off unless the local stack turns it on

	InboundPort       int           // INBOUND_PORT
	MetricsPort       int           // METRICS_PORT; 0: off
	HeartbeatInterval time.Duration // HEARTBEAT_INTERVAL
	QueueSize         int           // CLIENT_QUEUE_SIZE
	WriteTimeout      time.Duration // CLIENT_WRITE_TIMEOUT
	DrainTimeout      time.Duration // DRAIN_TIMEOUT
	EdgeID            string        // EDGE_ID
	AllowedOrigins    []string      // ALLOWED_ORIGINS; "*" allows any
	WSMaxFrameSize    int           // WS_MAX_FRAME_SIZE
	LongPollTimeout   time.Duration // LONGPOLL_TIMEOUT
	Pprof             bool          // PPROF: /debug/pprof/ on the operations port

	// PhoenixLongPoll is phoenix.js's LongPoll transport (vsn= on
	// /socket/longpoll).
	PhoenixLongPoll PhoenixLongPoll

	// HistoryReadConcurrency (HISTORY_READ_CONCURRENCY) bounds the reads of
	// history (resumes, long-polls) that run at once; the others queue.
	HistoryReadConcurrency int
}

// PhoenixLongPoll configures phoenix.js's LongPoll transport.
type PhoenixLongPoll struct {
	Timeout     time.Duration // PHOENIX_LONGPOLL_TIMEOUT: a poll's wait
	MaxSessions int           // PHOENIX_LONGPOLL_MAX_SESSIONS, per edge
	// Secret (PHOENIX_LONGPOLL_SECRET) signs session tokens; empty: the
	// key is derived from JWT_SECRET_KEY.
	Secret string
}

// ParseEdge reads the edge's configuration.
func ParseEdge(args []string, getenv func(string) string, out io.Writer) (*Edge, error) {
	var c Edge
	s := New("edge")
	s.Port(&c.InboundPort, "INBOUND_PORT", 4000, "Public port: client connections (SSE, WebSocket, long-polling) and the API gateway. Open only while the edge is ready.")
	s.OptionalPort(&c.MetricsPort, "METRICS_PORT", 4001, "Operations port: /health (liveness), /health/ready (readiness) and /metrics (Prometheus); 0 turns it off.")
	s.Bool(&c.Pprof, "PPROF", false, "Serve Go's profiler at /debug/pprof/ on the operations port (METRICS_PORT).")
	s.jwtKeys(&c.JWT, true)
	s.jwtClaims(&c.JWT)
	s.Duration(&c.HeartbeatInterval, "HEARTBEAT_INTERVAL", 10*time.Second, 100*time.Millisecond, "How often idle connections get a heartbeat.")
	s.Int(&c.QueueSize, "CLIENT_QUEUE_SIZE", 1024, 8, 1_000_000, "Events queued per connection; a client that falls this far behind is disconnected.")
	s.Duration(&c.WriteTimeout, "CLIENT_WRITE_TIMEOUT", 10*time.Second, 100*time.Millisecond, "How long one write to a client may block before the client is disconnected.")
	s.Duration(&c.DrainTimeout, "DRAIN_TIMEOUT", 10*time.Second, 0, "On SIGTERM, how long to wait for clients to leave before closing them.")
	s.String(&c.EdgeID, "EDGE_ID", defaultEdgeID(), "This edge's id in presence and logs.")
	s.List(&c.AllowedOrigins, "ALLOWED_ORIGINS", "*", `Origins (scheme://host[:port]) whose pages may open WebSockets and SSE streams; others get 403, allowed ones CORS headers. "*" allows any page, as RIG did; unsafe in production.`)
	s.Check(checkOrigins(&c.AllowedOrigins))
	s.Duration(&c.LongPollTimeout, "LONGPOLL_TIMEOUT", 25*time.Second, 100*time.Millisecond, "How long a long-poll request waits for an event before answering with none.")
	s.Duration(&c.PhoenixLongPoll.Timeout, "PHOENIX_LONGPOLL_TIMEOUT", 10*time.Second, 100*time.Millisecond, "How long a Phoenix long-poll (phoenix.js LongPoll, /socket/longpoll?vsn=) waits for a message before answering 204; keep it below the client's longpollerTimeout (20s by default). An idle session ends after 3 times this.")
	s.Int(&c.PhoenixLongPoll.MaxSessions, "PHOENIX_LONGPOLL_MAX_SESSIONS", 10_000, 1, 10_000_000, "Most Phoenix long-poll sessions one edge serves at once; past it a new one is refused (status 500: phoenix.js retries with backoff).")
	s.Secret(&c.PhoenixLongPoll.Secret, "PHOENIX_LONGPOLL_SECRET", "Key that signs Phoenix long-poll session tokens; the same on every edge, so that a poll can land on any. Empty: derived from JWT_SECRET_KEY; without that either, each edge makes its own, and a poll that lands on another edge starts a new session.")
	s.Int(&c.HistoryReadConcurrency, "HISTORY_READ_CONCURRENCY", 16, 1, 10_000, "History reads (resumes, long-polls) that run at once; more wait their turn, each until its 10s deadline, then fail so that the client retries with the same cursor.")
	s.Size(&c.WSMaxFrameSize, "WS_MAX_FRAME_SIZE", 64<<10, 256, 16<<20, "Largest WebSocket message a client may send; a larger one closes the socket (1009).")
	s.limits(&c.Limits)
	s.publicTLS(&c.TLS)
	s.demo(&c.Demo)
	s.nats(&c.NATS, "rig-edge")
	s.log(&c.Log)
	s.Check(func() error {
		if s := c.PhoenixLongPoll.Secret; s != "" && len(s) < 16 {
			return &Error{Setting: "PHOENIX_LONGPOLL_SECRET", Value: "(hidden)", Expected: "a secret of at least 16 bytes"}
		}
		return nil
	})
	s.proxy(&c.Proxy, getenv, &c.InboundPort, &c.MetricsPort)
	if err := s.Parse(args, getenv, out); err != nil {
		return nil, err
	}
	return &c, nil
}

// Ingest is the ingest binary's configuration.
type Ingest struct {
	NATS NATS
	Log  Log

	APIPort          int           // API_PORT
	APIHost          string        // API_HOST: the address API_PORT binds to (0.0.0.0: every interface)
	MessageUserField string        // MESSAGE_USER_FIELD
	MaxMessageSize   int           // MESSAGE_MAX_SIZE
	PublishTimeout   time.Duration // PUBLISH_TIMEOUT
	BatchMaxSize     int           // MESSAGE_BATCH_MAX_SIZE
	BatchMaxCount    int           // MESSAGE_BATCH_MAX_COUNT
	Pprof            bool          // PPROF: /debug/pprof/ on the API port

	// JWT (JWT_SECRET_KEY, JWT_PUBLIC_KEY, JWT_JWKS_URL..., all optional
	// here) verifies the token sent with RIG 1.x's DELETE
	// /v1/users/<user>/sessions/<jti>, whose exp then sets how long the
	// session stays blacklisted; the edge's settings, so both agree.
	JWT JWT
	// BlacklistDefaultExpiry (JWT_BLACKLIST_DEFAULT_EXPIRY_HOURS) is that
	// duration when no verified token tells.
	BlacklistDefaultExpiry time.Duration
	// PresenceTimeout (PRESENCE_TIMEOUT) bounds how long a presence query
	// waits for the edges' answers.
	PresenceTimeout time.Duration
	// AdminMetricsInterval (ADMIN_METRICS_INTERVAL) is how often ingest
	// samples the figures of GET /v1/admin/metrics (the console's charts).
	AdminMetricsInterval time.Duration
	// APITokens (API_TOKENS) are the bearer tokens the API accepts; more
	// than one so that a new token can be rolled out before the old one is
	// removed. None: the API is open to whoever reaches API_HOST.
	APITokens []string
	// APITokensProtectOps (API_TOKENS_PROTECT_OPS) makes /health,
	// /health/ready and /metrics need a token too; off by default because
	// load balancers' and Prometheus' probes seldom send one.
	APITokensProtectOps bool
	// Routes are the API gateway's rules for /v1/apis, and the edges'
	// route file, whose routes are read-only there.
	Routes Routes
}

// minAPITokenLen keeps guessable API tokens out.
const minAPITokenLen = 16

// ParseIngest reads the ingest binary's configuration.
func ParseIngest(args []string, getenv func(string) string, out io.Writer) (*Ingest, error) {
	var c Ingest
	s := New("ingest")
	s.Port(&c.APIPort, "API_PORT", 4010, "Internal port of the back-end API.")
	s.String(&c.APIHost, "API_HOST", "127.0.0.1", "Address API_PORT binds to: 127.0.0.1 keeps the API on this machine; 0.0.0.0 is every interface, for containers on an internal network.")
	var tokens string
	s.Secret(&tokens, "API_TOKENS", "Comma-separated bearer tokens (at least 16 bytes each) the API accepts on every /v1/* call (401 without one, 403 with a wrong one); several allow rotation. None: the API is unauthenticated.")
	s.Bool(&c.APITokensProtectOps, "API_TOKENS_PROTECT_OPS", false, "With API_TOKENS, /health, /health/ready and /metrics need a token too.")
	s.String(&c.MessageUserField, "MESSAGE_USER_FIELD", "user", "Field of a posted message that names the user to deliver it to.")
	s.Size(&c.MaxMessageSize, "MESSAGE_MAX_SIZE", 64<<10, 64, 8<<20, "Largest accepted message body; larger ones get 413.")
	s.Size(&c.BatchMaxSize, "MESSAGE_BATCH_MAX_SIZE", 4<<20, 64, 64<<20, "Largest accepted body of a batch (POST /v1/messages with a JSON array); larger ones get 413.")
	s.Int(&c.BatchMaxCount, "MESSAGE_BATCH_MAX_COUNT", 1000, 1, 100_000, "Most messages in one batch (POST /v1/messages with a JSON array); more get 413.")
	s.Bool(&c.Pprof, "PPROF", false, "Serve Go's profiler at /debug/pprof/ on the API port.")
	s.Duration(&c.PublishTimeout, "PUBLISH_TIMEOUT", 5*time.Second, 10*time.Millisecond, "How long to wait for JetStream to store a message before answering 503.")
	s.jwtKeys(&c.JWT, false)
	var expiryHours int
	s.Int(&expiryHours, "JWT_BLACKLIST_DEFAULT_EXPIRY_HOURS", 1, 1, 87600, "Hours a session stays blacklisted by DELETE /v1/users/<user>/sessions/<jti> when no verified token with that jti gives its exp.")
	s.Duration(&c.PresenceTimeout, "PRESENCE_TIMEOUT", 2*time.Second, 10*time.Millisecond, "Longest a presence query (GET /v1/users...) waits for the edges' answers.")
	s.Duration(&c.AdminMetricsInterval, "ADMIN_METRICS_INTERVAL", 5*time.Second, 250*time.Millisecond, "How often ingest samples the last 15 minutes' figures of GET /v1/admin/metrics (the console's charts), at most 1m.")
	s.nats(&c.NATS, "rig-ingest")
	s.log(&c.Log)
	s.routes(&c.Routes, getenv, false, &c.APIPort)
	s.Check(func() error {
		if c.MessageUserField == "" {
			return &Error{Setting: "MESSAGE_USER_FIELD", Value: "", Expected: "a field name"}
		}
		return nil
	})
	s.Check(func() error {
		if c.AdminMetricsInterval > time.Minute {
			return &Error{Setting: "ADMIN_METRICS_INTERVAL", Value: c.AdminMetricsInterval.String(), Expected: "a duration from 250ms to 1m"}
		}
		return nil
	})
	s.Check(func() error {
		c.BlacklistDefaultExpiry = time.Duration(expiryHours) * time.Hour
		return nil
	})
	s.Check(func() error {
		if c.APIHost != "" && !validHost(c.APIHost) {
			return &Error{Setting: "API_HOST", Value: c.APIHost, Expected: "an IP address or host name without a port, such as 127.0.0.1 or 0.0.0.0"}
		}
		c.APITokens = SplitList(tokens)
		for _, t := range c.APITokens {
			if len(t) < minAPITokenLen {
				return &Error{Setting: "API_TOKENS", Value: "(hidden)", Expected: fmt.Sprintf("comma-separated tokens of at least %d bytes each", minAPITokenLen)}
			}
		}
		return nil
	})
	if err := s.Parse(args, getenv, out); err != nil {
		return nil, err
	}
	return &c, nil
}

// validHost accepts an IP address or a DNS host name, not host:port.
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// checkOrigins accepts "*" or origins as browsers send them: scheme and
// host, an optional port, nothing else. A typo such as a trailing slash
// would otherwise refuse every browser without a word.
func checkOrigins(origins *[]string) func() error {
	return func() error {
		for _, o := range *origins {
			if o == "*" {
				continue
			}
			u, err := url.Parse(o)
			if err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
				return &Error{Setting: "ALLOWED_ORIGINS", Value: strings.Join(*origins, ","),
					Expected: fmt.Sprintf("* or a comma-separated list of origins such as https://app.example.com:8443 (no path, no trailing slash); %q is not one", o)}
			}
		}
		return nil
	}
}

func defaultEdgeID() string {
	host, err := os.Hostname()
	if err != nil {
		host = "edge"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}
