package client

// Disconnect is why a connection ends, the same on every transport (as
// centrifuge's Disconnect): Reason is what the edge logs, and Code is the
// WebSocket close code a socket's close frame carries with it, which tells
// the client whether to come back (1012: reconnect now; 1000: done).
// Transports without close frames (SSE, long-poll) only end the stream.
type Disconnect struct {
	Code   int
	Reason string
}

// The ways a connection ends. Those with a final event (SendFinal) are the
// ones a client is told of before the close; the others close at once.
var (
	DisconnectClientGone    = Disconnect{1001, "client closed the connection"}
	DisconnectSlow          = Disconnect{1008, "slow client: queue full"}
	DisconnectWriteFailed   = Disconnect{1011, "write failed"}
	DisconnectSessionKilled = Disconnect{1000, "session blacklisted"}
	DisconnectTokenExpired  = Disconnect{1000, "token expired"}
	DisconnectDraining      = Disconnect{1012, "edge draining"}
	DisconnectShutdown      = Disconnect{1012, "edge shutting down"}
	// DisconnectHistoryUnavailable ends a connection whose start, or a
	// refill of missed messages, could not be read from history: the
	// client comes back with its cursor (1012, like a drain).
	DisconnectHistoryUnavailable = Disconnect{1012, "history unavailable"}
)
