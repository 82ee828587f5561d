// Package app is each binary's program: it parses the configuration, opens
// the ports, builds the parts and runs them until its context ends. The
// commands call it from main; tests start a whole binary in-process with it.
package app

import (
	"io"
	"log/slog"
	"net"
	"strconv"
)

// Env is what a program gets from outside.
type Env struct {
	Args   []string
	Getenv func(string) string
	Stdout io.Writer // --help
	Stderr io.Writer // the log
	// Listen opens the listener of a port setting (INBOUND_PORT,
	// METRICS_PORT, API_PORT); nil listens on every address. Tests listen
	// on a loopback ":0" port here and learn it from Started.
	Listen func(setting string, port int) (net.Listener, error)
	// Started, when set, is told where the program listens once its ports
	// are open (the edge's public port opens for clients when it is ready).
	Started func(Addrs)
	// DefaultLogger makes the program's logger slog's default, for the
	// libraries that log through the standard logger (the binaries do; a
	// test running several programs in one process does not).
	DefaultLogger bool
}

// Addrs are where a started program listens.
type Addrs struct {
	Public net.Addr // INBOUND_PORT or API_PORT
	Ops    net.Addr // METRICS_PORT; nil: none
	NATS   string   // the embedded NATS server's URL; "": not embedded
}

func (e Env) listen(setting string, port int) (net.Listener, error) {
	return e.listenOn(setting, "", port)
}

// listenOn is listen bound to host ("": every address); Listen, when set,
// still decides.
func (e Env) listenOn(setting, host string, port int) (net.Listener, error) {
	if e.Listen != nil {
		return e.Listen(setting, port)
	}
	return net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
}

func (e Env) started(a Addrs) {
	if e.Started != nil {
		e.Started(a)
	}
}

func (e Env) setDefault(log *slog.Logger) {
	if e.DefaultLogger {
		slog.SetDefault(log)
	}
}
