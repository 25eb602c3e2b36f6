package proc

import (
	"bytes"
	"fmt"
)

// CoredumpFilterMax has every bit of a core dump filter set: the kernel
// knows nine kinds of mapping (MMF_DUMP_FILTER_BITS).
const CoredumpFilterMax = 1<<9 - 1

// ParseCoredumpFilter parses the contents of /proc/PID/coredump_filter:
// the mask of the kinds of mapping a core dump writes, in hexadecimal,
// and a newline.
func ParseCoredumpFilter(b []byte) (uint32, error) {
	v, err := parseNum[uint32](string(bytes.TrimSuffix(b, []byte{'\n'})), 16)
	if err != nil {
		return 0, fmt.Errorf("parse coredump_filter: %w", err)
	}
	if v > CoredumpFilterMax {
		return 0, fmt.Errorf("parse coredump_filter: %w: %#x has unknown bits", ErrSyntax, v)
	}
	return v, nil
}

// ReadCoredumpFilter reads the core dump filter of process pid; pid 0
// means the calling process.
func ReadCoredumpFilter(pid int) (uint32, error) {
	b, err := readSmall(Path(pid, "coredump_filter"))
	if err != nil {
		return 0, fmt.Errorf("read coredump_filter: %w", err)
	}
	return ParseCoredumpFilter(b)
}
