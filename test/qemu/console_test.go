package qemu

import (
	"bytes"
	"strings"
	"testing"
)

// frameText renders a frame as WriteFrame would.
func frameText(t *testing.T, tag string, payload []byte) string {
	t.Helper()
	var b bytes.Buffer
	if err := WriteFrame(&b, tag, payload); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestParseFrames(t *testing.T) {
	big := bytes.Repeat([]byte("vdso\x00\x7fELF\xff"), 1000)
	one := frameText(t, "a", []byte("hello"))
	tests := []struct {
		name    string
		console func() string
		want    []Frame
		wantErr string
	}{
		{
			name:    "single",
			console: func() string { return one },
			want:    []Frame{{"a", []byte("hello")}},
		},
		{
			name:    "empty payload",
			console: func() string { return frameText(t, "e", nil) },
			want:    []Frame{{"e", []byte{}}},
		},
		{
			name: "large payload through a tty (CRLF)",
			console: func() string {
				return strings.ReplaceAll(frameText(t, "big", big), "\n", "\r\n")
			},
			want: []Frame{{"big", big}},
		},
		{
			name: "firmware noise on the marker line and kernel lines inside",
			console: func() string {
				lines := strings.Split(frameText(t, "x", big), "\n")
				// lines[0] is empty; glue escape codes onto the begin line.
				lines[1] = "\x1bc\x1b[?7l\x1b[2JBooting from ROM..." + lines[1]
				lines = append(lines[:5], append([]string{"[    1.668644] ..MP-BIOS bug: 8254 timer not connected to IO-APIC"}, lines[5:]...)...)
				return "SeaBIOS (version 1.16.2)\n" + strings.Join(lines, "\n") + "[    3.5] reboot: Power down\n"
			},
			want: []Frame{{"x", big}},
		},
		{
			name:    "two frames",
			console: func() string { return one + "noise\n" + frameText(t, "b", []byte{1, 2, 3}) },
			want:    []Frame{{"a", []byte("hello")}, {"b", []byte{1, 2, 3}}},
		},
		{
			name:    "no frames",
			console: func() string { return "Kernel panic - not syncing: Attempted to kill init!\n" },
		},
		{
			name:    "cut short",
			console: func() string { return one[:strings.Index(one, frameEnd)] },
			wantErr: "no end marker",
		},
		{
			name: "corrupted data",
			console: func() string {
				lines := strings.Split(frameText(t, "c", big), "\n")
				b := []byte(lines[2]) // the first data line
				i := len(b) - 10
				if b[i] == 'A' {
					b[i] = 'B'
				} else {
					b[i] = 'A'
				}
				lines[2] = string(b)
				return strings.Join(lines, "\n")
			},
			wantErr: "sha256",
		},
		{
			name: "lost line",
			console: func() string {
				lines := strings.Split(frameText(t, "l", big), "\n")
				return strings.Join(append(lines[:3], lines[4:]...), "\n")
			},
			wantErr: "bytes, want",
		},
		{
			name: "good frame kept after a broken one",
			console: func() string {
				return one[:strings.Index(one, frameEnd)] + frameText(t, "b", []byte("ok"))
			},
			want:    []Frame{{"b", []byte("ok")}},
			wantErr: "before the next frame",
		},
		{
			name:    "bad size",
			console: func() string { return frameBegin + " t -1 00\n" + frameEnd + " t\n" },
			wantErr: "bad size",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFrames([]byte(tt.console()))
			if tt.wantErr == "" && err != nil {
				t.Fatalf("ParseFrames: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("ParseFrames error = %v, want one containing %q", err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d frames, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i].Tag != tt.want[i].Tag || !bytes.Equal(got[i].Payload, tt.want[i].Payload) {
					t.Errorf("frame %d = %q (%d bytes), want %q (%d bytes)", i, got[i].Tag, len(got[i].Payload), tt.want[i].Tag, len(tt.want[i].Payload))
				}
			}
		})
	}
}

func TestWriteFrameBadTag(t *testing.T) {
	for _, tag := range []string{"", "two words", "new\nline"} {
		if err := WriteFrame(&bytes.Buffer{}, tag, nil); err == nil {
			t.Errorf("WriteFrame(%q) succeeded", tag)
		}
	}
}
