// Package limit bounds what one key (a client address, a user, a session,
// an upstream) may take: Rate is a token bucket per key, Count a cap on
// what a key holds at once. Both are split over lock shards so that many
// connections admitted at once do not queue on one mutex, and both forget
// a key once it holds nothing, so memory follows the keys in use.
package limit

const shards = 32
