package proc

import (
	"bytes"
	"fmt"
	"strconv"
)

// TimensOffsets are a time namespace's clock offsets, in nanoseconds, as
// /proc/PID/timens_offsets gives them.
type TimensOffsets struct {
	Monotonic, Boottime int64
}

// ParseTimensOffsets parses the contents of /proc/PID/timens_offsets:
// lines of a clock name, seconds, and nanoseconds.
func ParseTimensOffsets(b []byte) (TimensOffsets, error) {
	var o TimensOffsets
	seen := map[string]bool{}
	for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte{'\n'}), []byte{'\n'}) {
		f := bytes.Fields(line)
		if len(f) != 3 {
			return o, fmt.Errorf("parse timens_offsets line %q: %w", line, ErrSyntax)
		}
		sec, err1 := strconv.ParseInt(string(f[1]), 10, 64)
		nsec, err2 := strconv.ParseInt(string(f[2]), 10, 64)
		if err1 != nil || err2 != nil || nsec < 0 || nsec >= 1e9 || sec > 1<<32 || sec < -(1<<32) {
			return o, fmt.Errorf("parse timens_offsets line %q: %w", line, ErrSyntax)
		}
		name := string(f[0])
		if seen[name] {
			return o, fmt.Errorf("parse timens_offsets: %s twice: %w", name, ErrSyntax)
		}
		seen[name] = true
		switch name {
		case "monotonic":
			o.Monotonic = sec*1e9 + nsec
		case "boottime":
			o.Boottime = sec*1e9 + nsec
		}
	}
	if !seen["monotonic"] || !seen["boottime"] {
		return o, fmt.Errorf("parse timens_offsets: monotonic or boottime missing: %w", ErrSyntax)
	}
	return o, nil
}

// ReadTimensOffsets reads the offsets of the time namespace of process
// pid; pid 0 means the calling process.
func ReadTimensOffsets(pid int) (TimensOffsets, error) {
	b, err := readSmall(Path(pid, "timens_offsets"))
	if err != nil {
		return TimensOffsets{}, fmt.Errorf("read time namespace offsets: %w", err)
	}
	return ParseTimensOffsets(b)
}
