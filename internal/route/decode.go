package route

// Reading a definition's JSON strictly with encoding/json. Left alone,
// encoding/json keeps the last of repeated members silently and matches
// member names case-insensitively ("ID" would fill "id"); a definition
// allows neither. So each object's member names are checked first,
// exactly and in document order, by a token-level pass with json.Decoder;
// then the object is decoded into its input struct.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// decoder reads one API, naming it in every error.
type decoder struct{ api string }

func (d *decoder) errorf(field, format string, args ...any) *Error {
	return &Error{API: d.api, Field: field, Problem: fmt.Sprintf(format, args...)}
}

// checkJSON refuses data that is not one JSON value in UTF-8 (RFC 8259),
// which encoding/json would otherwise read with U+FFFD in place of the
// bad bytes.
func checkJSON(data []byte) error {
	if !utf8.Valid(data) {
		at := 0
		for {
			r, n := utf8.DecodeRune(data[at:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			at += n
		}
		return &Error{Problem: fmt.Sprintf("not valid JSON: byte 0x%02X at offset %d is not UTF-8", data[at], at)}
	}
	var syn *json.SyntaxError
	if err := json.Unmarshal(data, new(json.RawMessage)); errors.As(err, &syn) {
		return &Error{Problem: fmt.Sprintf("not valid JSON: %v (at offset %d)", err, syn.Offset)}
	} else if err != nil {
		return &Error{Problem: "not valid JSON: " + err.Error()}
	}
	return nil
}

// member is one name and value of a JSON object, in document order.
type member struct {
	name  string
	value json.RawMessage
}

// members returns the members of the JSON object raw (valid JSON), or
// false when raw is not an object.
func members(raw json.RawMessage) ([]member, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	var ms []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		ms = append(ms, member{t.(string), v})
	}
	return ms, true
}

// object decodes the JSON object raw, found at field, into in, a pointer
// to an input struct. Its members must be in's json names, each once; the
// names of a struct embedded in it are accepted without being listed in
// the error (RIG's bookkeeping), and are not checked for repeats.
func (d *decoder) object(raw json.RawMessage, field string, in any) error {
	ms, ok := members(raw)
	if !ok {
		return d.errorf(field, "expected a JSON object, got %s", kind(raw))
	}
	return d.decode(raw, ms, field, in)
}

// decode is object for a caller that has read the object's members.
func (d *decoder) decode(raw json.RawMessage, ms []member, field string, in any) error {
	known, ignored := names(reflect.TypeOf(in).Elem())
	seen := make(map[string]bool, len(ms))
	for _, m := range ms {
		switch {
		case slices.Contains(ignored, m.name):
			continue
		case !slices.Contains(known, m.name):
			return d.errorf(join(field, m.name), "unknown field (expected one of %s)", strings.Join(known, ", "))
		case seen[m.name]:
			return d.errorf(join(field, m.name), "appears more than once")
		}
		seen[m.name] = true
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields() // the pass above refused unknown names already; this keeps the decoding strict without it
	err := dec.Decode(in)
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		i := slices.IndexFunc(ms, func(m member) bool { return m.name == te.Field })
		if i < 0 {
			return d.errorf(join(field, te.Field), "expected %s, got %s", te.Type, te.Value)
		}
		return d.typeError(join(field, te.Field), te.Type, ms[i].value)
	}
	if err != nil {
		return d.errorf(field, "%v", err)
	}
	return nil
}

// typeError says that raw, at field, is not of type t.
func (d *decoder) typeError(field string, t reflect.Type, raw json.RawMessage) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return d.errorf(field, "expected true or false, got %s", shown(raw))
	case reflect.String:
		return d.errorf(field, "expected a string, got %s", kind(raw))
	}
	return d.errorf(field, "expected %s, got %s", t, kind(raw))
}

// schema is the member names of an input struct, as names returns them.
type schema struct{ known, ignored []string }

var schemas sync.Map // reflect.Type to schema

// names returns the json names of struct type t's fields (known) and of
// the fields of structs embedded in it (ignored).
func names(t reflect.Type) (known, ignored []string) {
	if s, ok := schemas.Load(t); ok {
		return s.(schema).known, s.(schema).ignored
	}
	for f := range t.Fields() {
		if f.Anonymous {
			ignored, _ = names(f.Type)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		known = append(known, name)
	}
	schemas.Store(t, schema{known, ignored})
	return known, ignored
}

// present reports whether a member was given: absent and null are alike.
func present(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// str returns raw as a string, or false when raw is not a JSON string.
func str(raw json.RawMessage) (string, bool) {
	var s string
	if kind(raw) != "a string" || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

// kind names the type of the JSON value raw for an error message.
func kind(raw json.RawMessage) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// shown is a value for an error message, cut short.
func shown(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		b.Reset()
		b.Write(raw)
	}
	s := b.String()
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}
