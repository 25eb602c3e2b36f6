package main

import (
	"strconv"
	"unicode/utf8"
)

// jsonWriter writes JSON indented by two spaces, as encoding/json's
// Encoder with SetIndent("", "  ") does, for the few types that cryo
// prints for scripts. encoding/json finds fields by reflection, which
// took 0.2 MB of cryo's binary, mapped at every dump's and restore's
// peak.
type jsonWriter struct {
	b     []byte
	depth int
	fresh bool // the object or array just opened holds nothing yet
	keyed bool // a key was just written; its value follows on its line
}

// item begins a value or a key: after the one before it, on a line of
// its own, unless it is the value of a key.
func (w *jsonWriter) item() {
	if w.keyed {
		w.keyed = false
		return
	}
	if w.depth > 0 {
		if !w.fresh {
			w.b = append(w.b, ',')
		}
		w.newline()
	}
	w.fresh = false
}

func (w *jsonWriter) newline() {
	w.b = append(w.b, '\n')
	for range w.depth {
		w.b = append(w.b, "  "...)
	}
}

func (w *jsonWriter) open(c byte) {
	w.item()
	w.b = append(w.b, c)
	w.depth++
	w.fresh = true
}

func (w *jsonWriter) close(c byte) {
	w.depth--
	if !w.fresh {
		w.newline()
	}
	w.b = append(w.b, c)
	w.fresh = false
}

func (w *jsonWriter) key(k string) {
	w.str(k)
	w.b = append(w.b, ": "...)
	w.keyed = true
}

func (w *jsonWriter) uint(n uint64) {
	w.item()
	w.b = strconv.AppendUint(w.b, n, 10)
}

func (w *jsonWriter) bool(v bool) {
	w.item()
	w.b = strconv.AppendBool(w.b, v)
}

func (w *jsonWriter) strs(ss []string) {
	w.open('[')
	for _, s := range ss {
		w.str(s)
	}
	w.close(']')
}

// str writes s as a JSON string: quotes, backslashes and control
// characters escaped, and bytes that are not UTF-8 (a vDSO file's symbol
// names are anyone's) as U+FFFD.
func (w *jsonWriter) str(s string) {
	w.item()
	const hex = "0123456789abcdef"
	w.b = append(w.b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			w.b = append(w.b, '\\', c)
		case c < ' ':
			w.b = append(w.b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		case c < utf8.RuneSelf:
			w.b = append(w.b, c)
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			w.b = utf8.AppendRune(w.b, r) // RuneError for a bad byte
			i += size
			continue
		}
		i++
	}
	w.b = append(w.b, '"')
}
