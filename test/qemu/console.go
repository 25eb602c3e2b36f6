package qemu

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Frame markers. Every line of a frame carries a marker and the tag, so
// kernel messages printed on lines of their own in between are skipped, and
// a marker found in the middle of a line (after firmware escape codes, say)
// still counts.
const (
	frameBegin = "cryo-qemu-begin"
	frameData  = "cryo-qemu-data"
	frameEnd   = "cryo-qemu-end"
	// frameChunk is the number of payload bytes per data line (76 base64
	// characters), short enough for any console.
	frameChunk = 57
)

// Frame is one payload a guest printed with WriteFrame.
type Frame struct {
	Tag     string
	Payload []byte
}

// WriteFrame prints payload as a tagged, checksummed block of text lines.
// The serial console is the only channel out of a guest that has no network
// and no disk; the checksum catches any byte the console mangled. tag must be
// a non-empty word without spaces.
func WriteFrame(w io.Writer, tag string, payload []byte) error {
	if tag == "" || strings.ContainsAny(tag, " \t\r\n") {
		return fmt.Errorf("frame: invalid tag %q", tag)
	}
	sum := sha256.Sum256(payload)
	var b bytes.Buffer
	// The leading newline ends whatever partial line the console had.
	fmt.Fprintf(&b, "\n%s %s %d %s\n", frameBegin, tag, len(payload), hex.EncodeToString(sum[:]))
	for off := 0; off < len(payload); off += frameChunk {
		end := min(off+frameChunk, len(payload))
		fmt.Fprintf(&b, "%s %s %s\n", frameData, tag, base64.StdEncoding.EncodeToString(payload[off:end]))
	}
	fmt.Fprintf(&b, "%s %s\n", frameEnd, tag)
	// One write keeps the frame together if another writer shares the console.
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("frame %s: write: %w", tag, err)
	}
	return nil
}

// ParseFrames extracts, in order, every frame in console output. A frame
// that is cut short, garbled or fails its checksum is an error (all such
// errors are joined); the good frames are still returned.
func ParseFrames(console []byte) ([]Frame, error) {
	var (
		frames []Frame
		errs   []error
		cur    *openFrame
	)
	sc := bufio.NewScanner(bytes.NewReader(console))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r \t")
		marker, fields, ok := findMarker(line)
		if !ok {
			continue
		}
		switch marker {
		case frameBegin:
			if cur != nil {
				errs = append(errs, fmt.Errorf("frame %s (line %d): no end marker before the next frame", cur.tag, cur.line))
			}
			cur = nil
			if len(fields) != 3 {
				errs = append(errs, fmt.Errorf("frame: line %d: malformed begin marker %q", n, line))
				continue
			}
			size, err := strconv.Atoi(fields[1])
			if err != nil || size < 0 {
				errs = append(errs, fmt.Errorf("frame %s: line %d: bad size %q", fields[0], n, fields[1]))
				continue
			}
			cur = &openFrame{tag: fields[0], size: size, sum: fields[2], line: n}
		case frameData:
			if cur == nil || len(fields) != 2 || fields[0] != cur.tag {
				continue // stray line, e.g. from an earlier broken frame
			}
			chunk, err := base64.StdEncoding.DecodeString(fields[1])
			if err != nil {
				errs = append(errs, fmt.Errorf("frame %s: line %d: %w", cur.tag, n, err))
				cur = nil
				continue
			}
			cur.data.Write(chunk)
		case frameEnd:
			if cur == nil || len(fields) != 1 || fields[0] != cur.tag {
				continue
			}
			f, err := cur.finish()
			if err != nil {
				errs = append(errs, err)
			} else {
				frames = append(frames, f)
			}
			cur = nil
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("frame: read console: %w", err))
	}
	if cur != nil {
		errs = append(errs, fmt.Errorf("frame %s (line %d): no end marker, console output cut short", cur.tag, cur.line))
	}
	return frames, errors.Join(errs...)
}

// findMarker locates a frame marker anywhere in line and returns the
// whitespace-separated fields after it.
func findMarker(line string) (marker string, fields []string, ok bool) {
	for _, m := range []string{frameBegin, frameData, frameEnd} {
		i := strings.Index(line, m+" ")
		if i < 0 {
			continue
		}
		return m, strings.Fields(line[i+len(m):]), true
	}
	return "", nil, false
}

// openFrame is a frame whose begin marker has been seen.
type openFrame struct {
	tag  string
	size int
	sum  string
	data bytes.Buffer
	line int
}

// finish checks a completed frame against its begin marker.
func (o *openFrame) finish() (Frame, error) {
	b := o.data.Bytes()
	if len(b) != o.size {
		return Frame{}, fmt.Errorf("frame %s (line %d): got %d bytes, want %d", o.tag, o.line, len(b), o.size)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != o.sum {
		return Frame{}, fmt.Errorf("frame %s (line %d): sha256 %s, want %s", o.tag, o.line, got, o.sum)
	}
	return Frame{Tag: o.tag, Payload: bytes.Clone(b)}, nil
}
