package route

// The path-pattern compiler: a route's path, path_regex and
// path_replacement, checked once when a definition is parsed and compiled
// again, the same way, when a Table is built.

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// pathPattern is a compiled Path.
type pathPattern struct {
	re      string // the anchored regular expression
	literal string // the path itself when it has no {name}
	params  int
	fixed   int // bytes matched literally, for precedence
}

// reserved are the edge's own paths; a route can never serve them.
var reserved = []string{"/health", "/socket"}

// Reserved reports whether path belongs to the edge itself (its health and
// connection endpoints), which routes never serve.
func Reserved(path string) bool {
	for _, r := range reserved {
		if len(path) >= len(r) && strings.EqualFold(path[:len(r)], r) && (len(path) == len(r) || path[len(r)] == '/') {
			return true
		}
	}
	return false
}

// compilePath checks a Path and turns it into a regular expression in which
// each {name} is a capture group of one or more bytes other than "/".
func compilePath(p string) (pathPattern, error) {
	var pp pathPattern
	switch {
	case !strings.HasPrefix(p, "/"):
		return pp, fmt.Errorf("expected a path starting with \"/\", got %s", strconv.Quote(p))
	case len(p) > maxPathLen:
		return pp, fmt.Errorf("expected at most %d bytes, got %d", maxPathLen, len(p))
	case strings.ContainsAny(p, "?#") || hasSpaceOrControl(p):
		return pp, fmt.Errorf("expected a path without query, fragment, spaces or control characters, got %s", strconv.Quote(p))
	}
	// Requests are matched by their decoded path, so the route's is too.
	dec, err := url.PathUnescape(p)
	if err != nil || hasControl(dec) || !utf8.ValidString(dec) {
		return pp, fmt.Errorf("invalid percent-encoding in %s", strconv.Quote(p))
	}
	for _, seg := range strings.Split(dec, "/")[1:] {
		if seg == "." || seg == ".." {
			return pp, fmt.Errorf("dot segments never match a request (requests are normalised), got %s", strconv.Quote(p))
		}
	}
	if strings.Contains(dec, "//") {
		return pp, fmt.Errorf("empty segments (//) never match a request (requests are normalised), got %s", strconv.Quote(p))
	}
	var re strings.Builder
	re.WriteString("^")
	for i := 0; i < len(dec); {
		switch c := dec[i]; c {
		case '{':
			end := strings.IndexByte(dec[i:], '}')
			if end < 0 {
				return pp, fmt.Errorf("unclosed { in %s", strconv.Quote(p))
			}
			name := dec[i+1 : i+end]
			if name == "" || strings.ContainsAny(name, "{/") {
				return pp, fmt.Errorf("expected {name} with a non-empty name, got %s in %s", strconv.Quote(dec[i:i+end+1]), strconv.Quote(p))
			}
			re.WriteString("([^/]+)")
			pp.params++
			i += end + 1
		case '}':
			return pp, fmt.Errorf("} without { in %s", strconv.Quote(p))
		default:
			j := i
			for j < len(dec) && dec[j] != '{' && dec[j] != '}' {
				j++
			}
			re.WriteString(regexp.QuoteMeta(dec[i:j]))
			pp.fixed += j - i
			i = j
		}
	}
	re.WriteString("$")
	pp.re = re.String()
	if pp.params == 0 {
		pp.literal = dec
	}
	if Reserved(dec) {
		return pp, fmt.Errorf("%s belongs to the edge itself (/health, /socket/...); routes cannot serve it", strconv.Quote(p))
	}
	return pp, nil
}

// compileRegex compiles a PathRegex anchored at both ends, as RIG did.
func compileRegex(s string) (*regexp.Regexp, error) {
	if len(s) > maxPathLen {
		return nil, fmt.Errorf("expected at most %d bytes, got %d", maxPathLen, len(s))
	}
	re, err := regexp.Compile(`^(?:` + s + `)$`)
	if err != nil {
		return nil, fmt.Errorf("not a valid regular expression (Go RE2 syntax): %v", err)
	}
	return re, nil
}

// replacement turns RIG's path_replacement, where \1 or \g{1} is a capture
// group, into a regexp.Expand template, checking the groups exist.
func replacement(s string, groups int) (string, error) {
	if len(s) > maxPathLen {
		return "", fmt.Errorf("expected at most %d bytes, got %d", maxPathLen, len(s))
	}
	if hasSpaceOrControl(s) || strings.ContainsAny(s, "?#") {
		return "", fmt.Errorf("expected a path without query, fragment, spaces or control characters, got %s", strconv.Quote(s))
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '$':
			b.WriteString("$$")
		case c == '\\' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			n := int(s[i+1] - '0')
			if n > groups {
				return "", fmt.Errorf("\\%d refers to a capture group the path does not have (it has %d)", n, groups)
			}
			b.WriteString("${" + strconv.Itoa(n) + "}")
			i++
		case c == '\\' && strings.HasPrefix(s[i:], `\g{`):
			end := strings.IndexByte(s[i:], '}')
			n, err := strconv.Atoi(s[i+3 : i+max(end, 3)])
			if end < 0 || err != nil || n < 0 {
				return "", fmt.Errorf("expected \\g{N} with a group number N, in %s", strconv.Quote(s))
			}
			if n > groups {
				return "", fmt.Errorf("\\g{%d} refers to a capture group the path does not have (it has %d)", n, groups)
			}
			b.WriteString("${" + strconv.Itoa(n) + "}")
			i += end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func hasSpaceOrControl(s string) bool { return hasControl(s) || strings.ContainsRune(s, ' ') }
