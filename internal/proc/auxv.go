package proc

import (
	"encoding/binary"
	"fmt"
)

// AuxEntry is one entry of the auxiliary vector: an AT_* type and its value.
type AuxEntry struct{ Type, Value uint64 }

// Auxv is the auxiliary vector of a process, without the final AT_NULL.
type Auxv []AuxEntry

// Lookup gives the value of the first entry of the type.
func (a Auxv) Lookup(typ uint64) (uint64, bool) {
	for _, e := range a {
		if e.Type == typ {
			return e.Value, true
		}
	}
	return 0, false
}

// ParseAuxv parses the contents of /proc/PID/auxv: native-endian 64-bit
// (type, value) pairs, the last and only the last of type AT_NULL (0).
func ParseAuxv(b []byte) (Auxv, error) {
	const size = 16
	if len(b) == 0 || len(b)%size != 0 {
		return nil, fmt.Errorf("parse auxv: %w: %d bytes, not a positive multiple of %d", ErrSyntax, len(b), size)
	}
	a := make(Auxv, len(b)/size-1)
	for i := range a {
		e := &a[i]
		e.Type = binary.NativeEndian.Uint64(b[i*size:])
		e.Value = binary.NativeEndian.Uint64(b[i*size+8:])
		if e.Type == 0 {
			return nil, fmt.Errorf("parse auxv: %w: AT_NULL at entry %d of %d", ErrSyntax, i, len(a)+1)
		}
	}
	if binary.NativeEndian.Uint64(b[len(b)-size:]) != 0 {
		return nil, fmt.Errorf("parse auxv: %w: does not end with AT_NULL", ErrSyntax)
	}
	return a, nil
}

// ReadAuxv reads and parses /proc/PID/auxv; pid 0 means the calling process.
// A zombie has no auxv (ESRCH), nor has a task whose file is empty: both
// are errors.
func ReadAuxv(pid int) (Auxv, error) {
	b, err := readSmall(Path(pid, "auxv"))
	if err != nil {
		return nil, fmt.Errorf("read auxv: %w", err)
	}
	return ParseAuxv(b)
}
