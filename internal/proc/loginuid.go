package proc

import (
	"bytes"
	"fmt"
)

// LoginUIDUnset is the audit login UID of a process no login has set:
// (uid_t)-1.
const LoginUIDUnset = 1<<32 - 1

// ParseLoginUID parses the contents of /proc/PID/loginuid: one decimal
// number, which the kernel writes without a newline.
func ParseLoginUID(b []byte) (uint32, error) {
	v, err := parseNum[uint32](string(bytes.TrimSuffix(b, []byte{'\n'})), 10)
	if err != nil {
		return 0, fmt.Errorf("parse loginuid: %w", err)
	}
	return v, nil
}

// ReadLoginUID reads the audit login UID of process (or thread) pid; an
// error wrapping fs.ErrNotExist on a kernel without audit support.
func ReadLoginUID(pid int) (uint32, error) {
	b, err := readSmall(Path(pid, "loginuid"))
	if err != nil {
		return 0, fmt.Errorf("read loginuid: %w", err)
	}
	return ParseLoginUID(b)
}
