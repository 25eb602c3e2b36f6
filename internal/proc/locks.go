package proc

import (
	"fmt"
	"math"
	"strings"
)

// Lock is one line of /proc/locks, or the value of a "lock:" line of an
// fdinfo, which the kernel writes the same way:
//
//	ID: [-> ]CLASS MODE TYPE PID MAJ:MIN:INO START END
type Lock struct {
	// ID numbers the locks of the listing, from 1; a waiter has the ID
	// of the lock it waits for.
	ID int
	// Waiting marks a request blocked on lock ID ("->"): nothing is held.
	Waiting bool
	// Class is LockPOSIX, LockOFD, LockFlock, LockLease, LockDeleg,
	// LockAccess or LockUnknown (Class, Mode and Type may also be words
	// of a newer kernel).
	Class string
	// Mode is ADVISORY; MANDATORY (POSIX locks on a file with mandatory
	// locking, before Linux 5.15) or MSNFS (flock LOCK_MAND, before 5.18);
	// ACTIVE, BREAKING or BREAKER for leases; *NOINODE* or UNKNOWN.
	Mode string
	// Type is LockRead or LockWrite; UNLCK for a lease being broken to
	// none; RW or NONE for MSNFS locks.
	Type string
	// Pid is the process that took the lock; -1 for OFD locks, which
	// belong to an open file description.
	Pid int
	// Major, Minor and Ino are the locked file's device and inode; all
	// zero for a lock without inode.
	Major, Minor uint32
	Ino          uint64
	// Start and End are the first and last bytes locked; End is
	// math.MaxInt64 to the end of the file, whatever its size ("EOF").
	// flock locks and leases cover the whole file: 0 to EOF.
	Start, End int64
}

// Lock classes, as the kernel writes them.
const (
	LockPOSIX   = "POSIX"
	LockOFD     = "OFDLCK"
	LockFlock   = "FLOCK"
	LockLease   = "LEASE"
	LockDeleg   = "DELEG"
	LockAccess  = "ACCESS"
	LockUnknown = "UNKNOWN"
)

// Lock types, as the kernel writes them.
const (
	LockRead  = "READ"
	LockWrite = "WRITE"
)

// eof is the End of a lock to the end of the file: the kernel's OFFSET_MAX.
const eof = math.MaxInt64

func (l Lock) String() string {
	end := "EOF"
	if l.End != eof {
		end = fmt.Sprint(l.End)
	}
	return fmt.Sprintf("%s %s %s lock of pid %d on %02x:%02x:%d bytes %d-%s", l.Mode, l.Class, l.Type, l.Pid, l.Major, l.Minor, l.Ino, l.Start, end)
}

// ToEOF reports whether the lock runs to the end of the file.
func (l Lock) ToEOF() bool { return l.End == eof }

// Overlaps reports whether the byte ranges of two locks meet.
func (l Lock) Overlaps(o Lock) bool { return l.Start <= o.End && o.Start <= l.End }

// ParseLocks parses the contents of /proc/locks.
func ParseLocks(b []byte) ([]Lock, error) {
	var locks []Lock
	err := eachLine(b, func(line []byte) error {
		l, err := ParseLock(string(line))
		locks = append(locks, l)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("parse locks: %w", err)
	}
	return locks, nil
}

// ParseLock parses one line of /proc/locks or the value of an fdinfo
// "lock:" line.
func ParseLock(s string) (Lock, error) {
	var l Lock
	id, rest, ok := strings.Cut(s, ":")
	if !ok {
		return l, fmt.Errorf("%w: no lock number", ErrSyntax)
	}
	var err error
	if l.ID, err = parseNum[int](id, 10); err != nil {
		return l, err
	}
	w := strings.Fields(rest)
	if len(w) > 0 && w[0] == "->" {
		l.Waiting, w = true, w[1:]
	}
	if len(w) != 7 {
		return l, fmt.Errorf("%w: %d fields, want 7", ErrSyntax, len(w))
	}
	// Words a newer kernel may add are kept as they are, for the caller
	// to refuse by name: one lock of a kind cryo does not know must not
	// make every other lock unreadable.
	l.Class, l.Mode, l.Type = w[0], w[1], w[2]
	if l.Pid, err = parseNum[int](w[3], 10); err != nil {
		return l, err
	}
	if w[4] != "<none>:0" {
		if err := l.parseInode(w[4]); err != nil {
			return l, err
		}
	}
	if l.Start, err = parseNum[int64](w[5], 10); err != nil {
		return l, err
	}
	l.End = eof
	if w[6] != "EOF" {
		if l.End, err = parseNum[int64](w[6], 10); err != nil {
			return l, err
		}
	}
	if l.Start < 0 || l.End < l.Start {
		return l, fmt.Errorf("%w: byte range %d-%d", ErrSyntax, l.Start, l.End)
	}
	return l, nil
}

// parseInode parses MAJ:MIN:INO, the first two in hex.
func (l *Lock) parseInode(s string) error {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return fmt.Errorf("%w: inode %q", ErrSyntax, s)
	}
	var err error
	if l.Major, err = parseNum[uint32](parts[0], 16); err != nil {
		return err
	}
	if l.Minor, err = parseNum[uint32](parts[1], 16); err != nil {
		return err
	}
	l.Ino, err = parseNum[uint64](parts[2], 10)
	return err
}

// ReadLocks reads and parses /proc/locks: every lock of the system, seen
// from cryo's PID namespace.
func ReadLocks() ([]Lock, error) {
	b, err := readSmall("/proc/locks")
	if err != nil {
		return nil, fmt.Errorf("read locks: %w", err)
	}
	return ParseLocks(b)
}

// Locks parses the "lock:" lines of an fdinfo: the locks held through
// the open file description (flock and OFD locks, leases), and the POSIX
// locks of the process whose fdinfo it is that were taken through it.
func (f Fdinfo) Locks() ([]Lock, error) {
	var out []Lock
	for _, kv := range f.Extra {
		if kv.Key != "lock" {
			continue
		}
		l, err := ParseLock(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("lock line %q: %w", kv.Value, err)
		}
		out = append(out, l)
	}
	return out, nil
}
