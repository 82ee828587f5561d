package positions

import "github.com/rig-go/rig/internal/rig"

// Marks are one client's upTo per user: after a replay the client has every
// message of the user up to that position, so a live copy of one of them
// (held while the replay was read, or still on its way) is a duplicate. A
// user's mark goes at the first newer message: live messages come in
// order, so the rest are new. The zero value has no marks. Not safe for
// concurrent use: the client guards it with its lock.
type Marks struct {
	upTo map[string]uint64
}

// Have records that the client has every message of users up to upTo, and
// the messages in evs.
func (m *Marks) Have(users []string, upTo uint64, evs []*rig.Event) {
	if m.upTo == nil {
		m.upTo = make(map[string]uint64, len(users))
	}
	for _, u := range users {
		m.upTo[u] = max(m.upTo[u], upTo)
	}
	for _, ev := range evs {
		if ev.Kind == rig.KindMessage {
			m.upTo[ev.User] = max(m.upTo[ev.User], ev.Seq)
		}
	}
}

// Duplicate reports whether the client has ev already.
func (m *Marks) Duplicate(ev *rig.Event) bool {
	if m.upTo == nil || ev.Kind != rig.KindMessage || ev.Seq == 0 {
		return false
	}
	upTo, ok := m.upTo[ev.User]
	if !ok {
		return false
	}
	if ev.Seq <= upTo {
		return true
	}
	delete(m.upTo, ev.User)
	if len(m.upTo) == 0 {
		m.upTo = nil
	}
	return false
}
