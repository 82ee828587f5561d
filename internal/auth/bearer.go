package auth

import "strings"

// BearerToken returns the token of an Authorization value "Bearer <token>"
// (the scheme in any case, white space around the token ignored), and
// whether v has that shape.
func BearerToken(v string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(v), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}
