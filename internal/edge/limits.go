package edge

import (
	"context"
	"math"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/clientaddr"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/limit"
	"github.com/rig-go/rig/internal/metrics"
)

// limits are what one client address, user or session may hold of the
// edge's connections, checked when a /socket/* request is admitted. The
// gate counts TCP connections (all, and per untrusted peer) itself.
type limits struct {
	cfg        config.Limits
	metrics    *metrics.Edge
	trusted    *clientaddr.Trusted
	perIP      *limit.Count[netip.Addr] // shared with the gate
	perMinute  *limit.Rate              // nil: no limit
	perUser    *limit.Count[string]
	perSession *limit.Count[string]
}

func newLimits(cfg config.Limits, m *metrics.Edge) *limits {
	l := &limits{
		cfg:        cfg,
		metrics:    m,
		trusted:    clientaddr.NewTrusted(cfg.TrustedProxies),
		perIP:      limit.NewCount[netip.Addr](cfg.PerIP),
		perUser:    limit.NewCount[string](cfg.PerUser),
		perSession: limit.NewCount[string](cfg.PerSession),
	}
	if cfg.PerMinute > 0 {
		// A bucket of a minute's connections, refilled evenly: a client
		// may open them at once, then one every 60/n seconds.
		l.perMinute = limit.NewRate(float64(cfg.PerMinute)/60, cfg.PerMinute)
	}
	return l
}

// sweepEvery is how often the per-minute buckets that have refilled are
// dropped: each client address that connected has one until then.
const sweepEvery = 10 * time.Second

// sweep drops refilled per-minute buckets until ctx ends.
func (l *limits) sweep(ctx context.Context) {
	if l.perMinute == nil {
		return
	}
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			l.perMinute.Sweep(now)
		}
	}
}

// fileReserve is what the edge keeps of its open-file limit for everything
// but client connections: NATS (and, embedded, its server's clients),
// upstream connections of the API gateway, the operations port, files.
func fileReserve(nofile int) int {
	return min(max(256, nofile/10), nofile/2)
}

// maxConnections is the cap in force: MAX_CONNECTIONS, or, at 0, the
// process's open-file limit less the reserve. Go raises the soft limit
// to the hard one at start, so the limit read here is the one that holds.
func maxConnections(set int) (cap, nofile int) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < math.MaxInt32 {
		nofile = int(rl.Cur)
	} else {
		nofile = math.MaxInt32
	}
	if set > 0 {
		return set, nofile
	}
	return max(nofile-fileReserve(nofile), 1), nofile
}

// client returns a request's client address (for limits, logs and the
// gateway's rate limit), whether per-address limits apply to it, and
// whether it came through a trusted proxy (so its TCP connection was not
// counted for its own address at accept).
func (l *limits) client(c *fiber.Ctx) (addr netip.Addr, limited, proxied bool) {
	peer := clientaddr.Addr(c.Context().RemoteAddr())
	if !l.trusted.Contains(peer) {
		return peer, true, false
	}
	addr, limited = l.trusted.Resolve(peer, c.Request().Header.PeekAll(fiber.HeaderXForwardedFor))
	return addr, limited, true
}

// remoteString is how logs show a client address.
func remoteString(a netip.Addr) string {
	if !a.IsValid() {
		return "invalid"
	}
	return a.String()
}

// checkRate takes one of the client address's connections of the minute
// (MAX_CONNECTIONS_PER_MINUTE), or refuses with 429 and Retry-After.
func (l *limits) checkRate(addr netip.Addr, limited bool) error {
	if l.perMinute == nil || !limited {
		return nil
	}
	if l.perMinute.Allow(remoteString(addr), time.Now()) {
		return nil
	}
	l.metrics.Refused.IPRate.Inc()
	return &api.Error{Status: fiber.StatusTooManyRequests, Quiet: true,
		RetryAfter: max(1, int(math.Ceil(l.perMinute.Refill().Seconds()))),
		Message:    "too many connections from " + remoteString(addr) + ": at most " + strconv.Itoa(l.cfg.PerMinute) + " a minute (MAX_CONNECTIONS_PER_MINUTE)"}
}

// held is what one admitted connection (a stream, or a waiting long-poll)
// counts against the limits until its release.
type held struct {
	l             *limits
	ip            netip.Addr // counted per IP here (behind a proxy) when ipHeld
	ipHeld        bool
	user, session string // counted when not empty
	released      atomic.Bool
}

// hold counts a connection of a against the per-address (for a client
// behind a trusted proxy; a direct one was counted at accept), per-user
// and per-session limits, or refuses it with 429, holding nothing.
func (l *limits) hold(a *admission) (*held, *api.Error) {
	h := &held{l: l}
	if a.proxied && a.limited && l.perIP.Max() > 0 {
		if !l.perIP.Acquire(a.addr) {
			l.metrics.Refused.IP.Inc()
			return nil, tooMany("client address "+remoteString(a.addr), l.perIP.Max(), "MAX_CONNECTIONS_PER_IP")
		}
		h.ip, h.ipHeld = a.addr, true
	}
	if l.perUser.Max() > 0 {
		if !l.perUser.Acquire(a.session.User) {
			h.release()
			l.metrics.Refused.User.Inc()
			return nil, tooMany("user "+quote(a.session.User), l.perUser.Max(), "MAX_CONNECTIONS_PER_USER")
		}
		h.user = a.session.User
	}
	if id := a.session.ID; id != "" && l.perSession.Max() > 0 {
		if !l.perSession.Acquire(id) {
			h.release()
			l.metrics.Refused.Session.Inc()
			return nil, tooMany("session "+quote(id), l.perSession.Max(), "MAX_CONNECTIONS_PER_SESSION")
		}
		h.session = id
	}
	return h, nil
}

// tooMany is the refusal of a connection past a concurrent limit. Its
// Retry-After is a guess: a slot frees when another connection ends.
func tooMany(who string, n int, setting string) *api.Error {
	return &api.Error{Status: fiber.StatusTooManyRequests, Quiet: true, RetryAfter: 5,
		Message: who + " has " + strconv.Itoa(n) + " connections open, the most allowed (" + setting + ")"}
}

// release gives back what hold took; later calls do nothing.
func (h *held) release() {
	if h == nil || !h.released.CompareAndSwap(false, true) {
		return
	}
	if h.ipHeld {
		h.l.perIP.Release(h.ip)
	}
	if h.user != "" {
		h.l.perUser.Release(h.user)
	}
	if h.session != "" {
		h.l.perSession.Release(h.session)
	}
}
