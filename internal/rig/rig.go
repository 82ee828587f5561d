// Package rig holds RIG-Go's domain words: users and their NATS subjects,
// events, and the sessions that JWTs describe. It has no dependencies, so
// every other package can share these words without pulling in NATS or HTTP.
package rig
