package proc

import (
	"bytes"
	"fmt"
	"os"
	"strings"
)

// SysvShm is one System V shared memory segment, a line of
// /proc/sysvipc/shm, which lists those of the reader's IPC namespace.
type SysvShm struct {
	// Key is the segment's key; IPC_PRIVATE (0) once it is marked for
	// destruction.
	Key int32
	ID  int32
	// Mode holds the permission bits and SHM_DEST, SHM_LOCKED.
	Mode uint32
	// Size is the size asked for, in bytes, not rounded to pages.
	Size                 uint64
	Cpid, Lpid           int32
	Nattch               uint64
	UID, GID, CUID, CGID uint32
	// Atime, Dtime and Ctime are the last attach, detach and change, in
	// seconds since the epoch.
	Atime, Dtime, Ctime int64
	// Rss and Swap are the bytes of the segment in memory and in swap.
	Rss, Swap uint64
}

// Mode bits of shm_perm.mode the kernel adds to the permissions
// (<linux/shm.h>).
const (
	ShmDest   = 0o1000 // SHM_DEST: removed (IPC_RMID), destroyed at the last detach
	ShmLocked = 0o2000 // SHM_LOCKED: locked in memory (SHM_LOCK)
)

// sysvShmHeader starts the header line of /proc/sysvipc/shm.
const sysvShmHeader = "key"

// ParseSysvShm parses the contents of /proc/sysvipc/shm: a header line,
// then one line per segment. The columns after swap, should a kernel add
// any, are ignored.
func ParseSysvShm(b []byte) ([]SysvShm, error) {
	header, rest, _ := bytes.Cut(b, []byte{'\n'})
	if f := strings.Fields(string(header)); len(f) < 16 || f[0] != sysvShmHeader || f[1] != "shmid" {
		return nil, fmt.Errorf("parse sysvipc/shm: %w: header %q", ErrSyntax, header)
	}
	var out []SysvShm
	for n, line := range strings.Split(string(rest), "\n") {
		if line == "" {
			continue
		}
		s, err := parseSysvShmLine(line)
		if err != nil {
			return nil, fmt.Errorf("parse sysvipc/shm line %d: %w", n+2, err)
		}
		out = append(out, s)
	}
	if len(rest) > 0 && rest[len(rest)-1] != '\n' {
		return nil, fmt.Errorf("parse sysvipc/shm: %w: no newline at the end", ErrSyntax)
	}
	return out, nil
}

func parseSysvShmLine(line string) (SysvShm, error) {
	var s SysvShm
	f := strings.Fields(line)
	if len(f) < 16 {
		return s, fmt.Errorf("%w: %d fields in %q", ErrSyntax, len(f), line)
	}
	parsers := []func(string) error{
		num(&s.Key, 10), num(&s.ID, 10), num(&s.Mode, 8), num(&s.Size, 10), num(&s.Cpid, 10), num(&s.Lpid, 10),
		num(&s.Nattch, 10), num(&s.UID, 10), num(&s.GID, 10), num(&s.CUID, 10), num(&s.CGID, 10),
		num(&s.Atime, 10), num(&s.Dtime, 10), num(&s.Ctime, 10), num(&s.Rss, 10), num(&s.Swap, 10),
	}
	for i, parse := range parsers {
		if err := parse(f[i]); err != nil {
			return s, err
		}
	}
	if s.ID < 0 || s.Mode > 0o7777 {
		return s, fmt.Errorf("%w: segment id %d, mode %o", ErrSyntax, s.ID, s.Mode)
	}
	return s, nil
}

// ReadSysvShm lists the System V shared memory segments of cryo's IPC
// namespace.
func ReadSysvShm() ([]SysvShm, error) {
	b, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		return nil, fmt.Errorf("read sysvipc/shm: %w", err)
	}
	return ParseSysvShm(b)
}
