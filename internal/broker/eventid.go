package broker

import "github.com/nats-io/nats.go"

// EventIDOf returns the event id a stored (or republished) message carries
// in its headers, as its publisher set it: empty when it has none. This is
// the one place that knows which header holds it; history.EventOf decides
// whether it can be sent as it is.
func EventIDOf(h nats.Header) string {
	return h.Get(HeaderMsgID)
}
