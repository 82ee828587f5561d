// Package config reads settings from command-line flags and environment
// variables, once, at start, into typed values. Every setting has both an
// environment name (RIG's, where RIG had the setting) and a flag derived from
// it (INBOUND_PORT is --inbound-port); a flag wins over the environment.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Error is a setting whose value cannot be used. Its message is the one line
// an operator needs: which setting, which value, what was expected.
type Error struct {
	Setting  string // "INBOUND_PORT" or "--inbound-port"
	Value    string
	Expected string
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid %s=%q: expected %s", e.Setting, e.Value, e.Expected)
}

// A parser turns the text of a setting into its value, or says what it expected.
type parser func(s string) (expected string, ok bool)

type setting struct {
	env      string
	usage    string
	def      string
	expected string
	set      parser
	secret   bool // never print the value
}

func (s *setting) flagName() string {
	return strings.ReplaceAll(strings.ToLower(s.env), "_", "-")
}

// flagValue adapts a setting to flag.Value so the standard flag package
// parses the command line.
type flagValue struct {
	s   *setting
	cur string
	err *Error
}

func (v *flagValue) String() string { return v.cur }
func (v *flagValue) Set(text string) error {
	if exp, ok := v.s.set(text); !ok {
		v.err = &Error{Setting: "--" + v.s.flagName(), Value: text, Expected: exp}
		return v.err
	}
	v.cur = text
	return nil
}

// Set is a program's settings. Register them with the typed methods, then
// call Parse once.
type Set struct {
	program  string
	settings []*setting
	checks   []func() error
}

// New returns an empty Set for the named program.
func New(program string) *Set { return &Set{program: program} }

func (s *Set) add(env, def, usage, expected string, set parser) *setting {
	st := &setting{env: env, def: def, usage: usage, expected: expected, set: set}
	s.settings = append(s.settings, st)
	return st
}

// Check registers a validation that runs after every setting is parsed,
// for rules that involve several settings or a required one.
func (s *Set) Check(fn func() error) { s.checks = append(s.checks, fn) }

// String registers a text setting.
func (s *Set) String(p *string, env, def, usage string) {
	s.add(env, def, usage, "text", func(v string) (string, bool) { *p = v; return "", true })
}

// Secret registers a text setting whose value is never shown.
func (s *Set) Secret(p *string, env, usage string) {
	st := s.add(env, "", usage, "text", func(v string) (string, bool) { *p = v; return "", true })
	st.secret = true
}

// Bool registers a true/false setting.
func (s *Set) Bool(p *bool, env string, def bool, usage string) {
	const exp = "true or false"
	s.add(env, strconv.FormatBool(def), usage, exp, func(v string) (string, bool) {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return exp, false
		}
		*p = b
		return "", true
	})
}

// Int registers an integer setting within [min, max].
func (s *Set) Int(p *int, env string, def, min, max int, usage string) {
	exp := fmt.Sprintf("an integer from %d to %d", min, max)
	s.add(env, strconv.Itoa(def), usage, exp, func(v string) (string, bool) {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < min || n > max {
			return exp, false
		}
		*p = n
		return "", true
	})
}

// Port registers a TCP port setting.
func (s *Set) Port(p *int, env string, def int, usage string) {
	const exp = "a port number from 1 to 65535"
	s.add(env, strconv.Itoa(def), usage, exp, func(v string) (string, bool) {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > 65535 {
			return exp, false
		}
		*p = n
		return "", true
	})
}

// OptionalPort registers a TCP port setting where 0 means off.
func (s *Set) OptionalPort(p *int, env string, def int, usage string) {
	const exp = "a port number from 1 to 65535, or 0 for off"
	s.add(env, strconv.Itoa(def), usage, exp, func(v string) (string, bool) {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > 65535 {
			return exp, false
		}
		*p = n
		return "", true
	})
}

// HostPort registers a host:port address setting.
func (s *Set) HostPort(p *string, env, def, usage string) {
	const exp = "host:port, such as 127.0.0.1:4222"
	s.add(env, def, usage, exp, func(v string) (string, bool) {
		_, port, err := net.SplitHostPort(v)
		if err != nil {
			return exp, false
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return exp, false
		}
		*p = v
		return "", true
	})
}

// Duration registers a positive duration setting (10s, 5m, 1h30m), at least min.
func (s *Set) Duration(p *time.Duration, env string, def, min time.Duration, usage string) {
	exp := fmt.Sprintf("a duration of at least %s, such as 10s, 5m or 1h", min)
	s.add(env, def.String(), usage, exp, func(v string) (string, bool) {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < min {
			return exp, false
		}
		*p = d
		return "", true
	})
}

// List registers a comma-separated list; blanks around items are dropped.
func (s *Set) List(p *[]string, env, def, usage string) {
	s.add(env, def, usage, "a comma-separated list", func(v string) (string, bool) {
		*p = SplitList(v)
		return "", true
	})
}

// Enum registers a setting that takes one of a few words.
func (s *Set) Enum(p *string, env, def string, allowed []string, usage string) {
	exp := "one of " + strings.Join(allowed, ", ")
	s.add(env, def, usage, exp, func(v string) (string, bool) {
		for _, a := range allowed {
			if strings.EqualFold(v, a) {
				*p = a
				return "", true
			}
		}
		return exp, false
	})
}

// Size registers a byte size such as 65536, 64KiB or 1MiB, within [min, max].
func (s *Set) Size(p *int, env string, def, min, max int, usage string) {
	exp := fmt.Sprintf("a size in bytes from %d to %d, such as 65536, 64KiB or 1MiB", min, max)
	s.add(env, FormatSize(def), usage, exp, func(v string) (string, bool) {
		n, ok := ParseSize(v)
		if !ok || n < min || n > max {
			return exp, false
		}
		*p = n
		return "", true
	})
}

// SplitList splits a comma-separated list, dropping empty items.
func SplitList(v string) []string {
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// ParseSize reads a byte count with an optional B, KiB, MiB (or KB, MB, K, M) suffix.
func ParseSize(v string) (int, bool) {
	v = strings.TrimSpace(v)
	mult := 1
	lower := strings.ToLower(v)
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"k", 1 << 10}, {"m", 1 << 20}, {"b", 1}} {
		if strings.HasSuffix(lower, u.suffix) {
			mult = u.mult
			v = strings.TrimSpace(v[:len(v)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, false
	}
	return n * mult, true
}

// FormatSize prints a byte count the way ParseSize reads it.
func FormatSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n)
}

// Parse applies defaults, then the environment, then the command line.
// It returns flag.ErrHelp after printing the help to out when asked for
// --help, and an *Error for the first bad value.
func (s *Set) Parse(args []string, getenv func(string) string, out io.Writer) error {
	for _, st := range s.settings {
		if exp, ok := st.set(st.def); !ok {
			panic(fmt.Sprintf("config: default %q of %s is not %s", st.def, st.env, exp))
		}
	}
	for _, st := range s.settings {
		v := getenv(st.env)
		if v == "" {
			continue
		}
		if exp, ok := st.set(v); !ok {
			shown := v
			if st.secret {
				shown = "(hidden)"
			}
			return &Error{Setting: st.env, Value: shown, Expected: exp}
		}
	}
	fs := flag.NewFlagSet(s.program, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	values := make([]*flagValue, len(s.settings))
	for i, st := range s.settings {
		values[i] = &flagValue{s: st}
		fs.Var(values[i], st.flagName(), st.usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			s.PrintHelp(out)
			return flag.ErrHelp
		}
		for _, v := range values {
			if v.err != nil {
				return v.err
			}
		}
		return fmt.Errorf("%s: %w (see --help)", s.program, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q (see --help)", s.program, fs.Arg(0))
	}
	for _, check := range s.checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// PrintHelp lists every setting with its flag, environment name and default.
func (s *Set) PrintHelp(out io.Writer) {
	fmt.Fprintf(out, "Usage: %s [flags]\n\nEvery flag can also be set by the environment variable shown; a flag wins.\n\n", s.program)
	sorted := append([]*setting(nil), s.settings...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].env < sorted[j].env })
	for _, st := range sorted {
		def := st.def
		switch {
		case def == "":
			def = `""`
		}
		fmt.Fprintf(out, "  --%s, %s  (default %s)\n      %s\n", st.flagName(), st.env, def, st.usage)
	}
}
