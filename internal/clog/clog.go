// Package clog owns cryo's log: leveled lines of key=value pairs in the
// format of log/slog's text handler, which users and tests read and grep.
// It is not slog because slog brings encoding/json and its reflection,
// 0.3 MB of machine code and tables that the kernel maps around every
// page cryo runs, so that they counted in every dump's and restore's
// peak resident memory.
package clog

import (
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Level is a line's importance; a Logger writes those at its level or
// above. The values are slog's.
type Level int

const (
	LevelDebug Level = -4
	LevelInfo  Level = 0
	LevelWarn  Level = 4
	LevelError Level = 8
)

func (l Level) String() string {
	switch l {
	case LevelDebug:
		return "DEBUG"
	case LevelInfo:
		return "INFO"
	case LevelWarn:
		return "WARN"
	case LevelError:
		return "ERROR"
	}
	return "LEVEL(" + strconv.Itoa(int(l)) + ")"
}

// Logger writes lines at or above its level to its writer, one write a
// line. A nil *Logger discards everything, so that code run without a log
// needs no check.
type Logger struct {
	mu    sync.Mutex
	w     io.Writer
	level Level
	buf   []byte
}

// New returns a logger writing lines at level and above to w.
func New(w io.Writer, level Level) *Logger {
	return &Logger{w: w, level: level}
}

func (l *Logger) Debug(msg string, args ...any) { l.log(LevelDebug, msg, args) }
func (l *Logger) Info(msg string, args ...any)  { l.log(LevelInfo, msg, args) }
func (l *Logger) Warn(msg string, args ...any)  { l.log(LevelWarn, msg, args) }
func (l *Logger) Error(msg string, args ...any) { l.log(LevelError, msg, args) }

func (l *Logger) enabled(level Level) bool {
	return l != nil && level >= l.level
}

// log writes "time=T level=L msg=M" and args as key=value pairs, a key
// being a string and followed by its value; what breaks that shape is
// written under the key !BADKEY, as slog does.
func (l *Logger) log(level Level, msg string, args []any) {
	if !l.enabled(level) {
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf[:0]
	b = append(b, "time="...)
	b = now.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, " level="...)
	b = append(b, level.String()...)
	b = append(b, " msg="...)
	b = appendString(b, msg)
	for len(args) > 0 {
		key, ok := args[0].(string)
		if !ok || len(args) == 1 {
			key = "!BADKEY"
		} else {
			args = args[1:]
		}
		b = append(b, ' ')
		b = appendString(b, key)
		b = append(b, '=')
		b = appendValue(b, args[0])
		args = args[1:]
	}
	b = append(b, '\n')
	l.w.Write(b) // a log that cannot be written is not the work's failure
	l.buf = b
}

// appendValue appends v as slog's text handler does: numbers and
// durations as Go prints them, times in RFC 3339 with milliseconds, the
// rest (errors, Stringers, structs) as fmt's %+v, quoted when needed.
func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		return appendString(b, v)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case int32:
		return strconv.AppendInt(b, int64(v), 10)
	case uint:
		return strconv.AppendUint(b, uint64(v), 10)
	case uint64:
		return strconv.AppendUint(b, v, 10)
	case uint32:
		return strconv.AppendUint(b, uint64(v), 10)
	case bool:
		return strconv.AppendBool(b, v)
	case float64:
		return strconv.AppendFloat(b, v, 'g', -1, 64)
	case time.Duration:
		return append(b, v.String()...)
	case time.Time:
		return v.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	case nil:
		return append(b, "<nil>"...)
	}
	return appendString(b, fmt.Sprintf("%+v", v))
}

// appendString appends s, quoted if it is empty or holds a space, an '=',
// a '"', or a character that does not print.
func appendString(b []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == '=' || c == '"' || c == 0x7f {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}
