package clog

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"testing"
	"time"
)

// TestMatchesSlog checks that a line reads as log/slog's text handler
// writes it, the time apart, for the kinds of values cryo logs.
func TestMatchesSlog(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		args []any
	}{
		{"plain", "restore done", []any{"pid", 42, "took", 1500 * time.Microsecond, "vdso", "remap"}},
		{"numbers", "dump", []any{"peak-rss-kib", int64(11916), "vmas", uint64(60000), "addr", uint32(7), "n", int32(-3), "u", uint(9), "f", 0.25, "ok", true}},
		{"quoting", "a=b", []any{"path", "/tmp/with space", "empty", "", "eq", "x=y", "quote", `say "hi"`, "tab", "a\tb", "nl", "a\nb", "utf8", "café", "nbsp", "a\u00a0b", "bad", "\xff"}},
		{"error", "failed", []any{"err", fmt.Errorf("restore pid 7: %w", errors.New("files: fd 3"))}},
		{"stringer", "lock", []any{"addr", netip.MustParseAddr("10.0.0.1"), "ap", netip.MustParseAddrPort("[::1]:80")}},
		{"struct and slice", "x", []any{"s", struct{ A, B int }{1, 2}, "l", []int{1, 2}, "nil", nil}},
		{"bad key", "x", []any{7, "value", "dangling"}},
		{"odd", "x", []any{"k"}},
		{"time", "x", []any{"at", time.Date(2026, 12, 7, 10, 48, 30, 889e6, time.UTC)}},
	}
	noTime := regexp.MustCompile(`^time=\S+ `)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want, got bytes.Buffer
			slog.New(slog.NewTextHandler(&want, nil)).Info(tt.msg, tt.args...)
			New(&got, LevelInfo).Info(tt.msg, tt.args...)
			w, g := noTime.ReplaceAllString(want.String(), ""), noTime.ReplaceAllString(got.String(), "")
			if w != g {
				t.Errorf("got  %q\nwant %q", g, w)
			}
			if !noTime.MatchString(got.String()) {
				t.Errorf("no time in %q", got.String())
			}
		})
	}
}

func TestLevels(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, LevelWarn)
	l.Debug("d")
	l.Info("i")
	l.Warn("w")
	l.Error("e")
	var nilLog *Logger
	nilLog.Error("discarded")
	got := regexp.MustCompile(`level=(\S+) msg=(\S+)`).FindAllStringSubmatch(buf.String(), -1)
	if len(got) != 2 || got[0][1] != "WARN" || got[0][2] != "w" || got[1][1] != "ERROR" || got[1][2] != "e" {
		t.Errorf("at level WARN wrote %q", buf.String())
	}
}
