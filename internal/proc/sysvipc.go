package proc

import (
	"bytes"
	"fmt"
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

// ParseSysvShm parses the contents of /proc/sysvipc/shm: a header line,
// then one line per segment. The columns after swap, should a kernel add
// any, are ignored.
func ParseSysvShm(b []byte) ([]SysvShm, error) {
	return parseSysvTable(b, "shm", "shmid", 16, func(f []string) (SysvShm, error) {
		var s SysvShm
		err := parseColumns(f,
			num(&s.Key, 10), num(&s.ID, 10), num(&s.Mode, 8), num(&s.Size, 10), num(&s.Cpid, 10), num(&s.Lpid, 10),
			num(&s.Nattch, 10), num(&s.UID, 10), num(&s.GID, 10), num(&s.CUID, 10), num(&s.CGID, 10),
			num(&s.Atime, 10), num(&s.Dtime, 10), num(&s.Ctime, 10), num(&s.Rss, 10), num(&s.Swap, 10))
		if err == nil && (s.ID < 0 || s.Mode > 0o7777) {
			err = fmt.Errorf("%w: segment id %d, mode %o", ErrSyntax, s.ID, s.Mode)
		}
		return s, err
	})
}

// parseSysvTable parses a table of /proc/sysvipc/NAME: a header line,
// whose first two columns are "key" and idCol, then one line of at least
// cols columns per object, which line parses.
func parseSysvTable[T any](b []byte, name, idCol string, cols int, line func([]string) (T, error)) ([]T, error) {
	header, rest, _ := bytes.Cut(b, []byte{'\n'})
	if f := strings.Fields(string(header)); len(f) < cols || f[0] != "key" || f[1] != idCol {
		return nil, fmt.Errorf("parse sysvipc/%s: %w: header %q", name, ErrSyntax, header)
	}
	var out []T
	for n, l := range strings.Split(string(rest), "\n") {
		if l == "" {
			continue
		}
		f := strings.Fields(l)
		if len(f) < cols {
			return nil, fmt.Errorf("parse sysvipc/%s line %d: %w: %d fields in %q", name, n+2, ErrSyntax, len(f), l)
		}
		o, err := line(f)
		if err != nil {
			return nil, fmt.Errorf("parse sysvipc/%s line %d: %w", name, n+2, err)
		}
		out = append(out, o)
	}
	if len(rest) > 0 && rest[len(rest)-1] != '\n' {
		return nil, fmt.Errorf("parse sysvipc/%s: %w: no newline at the end", name, ErrSyntax)
	}
	return out, nil
}

// parseColumns parses the columns f, in order, one parser each.
func parseColumns(f []string, parsers ...func(string) error) error {
	for i, parse := range parsers {
		if err := parse(f[i]); err != nil {
			return err
		}
	}
	return nil
}

// ReadSysvShm lists the System V shared memory segments of cryo's IPC
// namespace.
func ReadSysvShm() ([]SysvShm, error) {
	return readSysv("shm", ParseSysvShm)
}

// readSysv reads /proc/sysvipc/NAME with parse.
func readSysv[T any](name string, parse func([]byte) ([]T, error)) ([]T, error) {
	b, err := readSmall("/proc/sysvipc/" + name)
	if err != nil {
		return nil, fmt.Errorf("read sysvipc/%s: %w", name, err)
	}
	return parse(b)
}

// SysvSem is one System V semaphore set, a line of /proc/sysvipc/sem.
type SysvSem struct {
	Key, ID int32
	// Mode holds the permission bits.
	Mode                 uint32
	Nsems                uint32
	UID, GID, CUID, CGID uint32
	// Otime and Ctime are the last semop and change, in seconds since
	// the epoch.
	Otime, Ctime int64
}

// ParseSysvSem parses the contents of /proc/sysvipc/sem, as
// ParseSysvShm does /proc/sysvipc/shm.
func ParseSysvSem(b []byte) ([]SysvSem, error) {
	return parseSysvTable(b, "sem", "semid", 10, func(f []string) (SysvSem, error) {
		var s SysvSem
		err := parseColumns(f, num(&s.Key, 10), num(&s.ID, 10), num(&s.Mode, 8), num(&s.Nsems, 10),
			num(&s.UID, 10), num(&s.GID, 10), num(&s.CUID, 10), num(&s.CGID, 10), num(&s.Otime, 10), num(&s.Ctime, 10))
		if err == nil && (s.ID < 0 || s.Mode > 0o777) {
			err = fmt.Errorf("%w: semaphore set id %d, mode %o", ErrSyntax, s.ID, s.Mode)
		}
		return s, err
	})
}

// ReadSysvSem lists the System V semaphore sets of cryo's IPC namespace.
func ReadSysvSem() ([]SysvSem, error) {
	return readSysv("sem", ParseSysvSem)
}

// SysvMsg is one System V message queue, a line of /proc/sysvipc/msg.
type SysvMsg struct {
	Key, ID int32
	// Mode holds the permission bits.
	Mode uint32
	// Cbytes and Qnum are the bytes and the number of the messages
	// queued.
	Cbytes, Qnum uint64
	// Lspid and Lrpid are the last process that sent and that received
	// a message, 0 if none has, in the reader's PID namespace.
	Lspid, Lrpid         int32
	UID, GID, CUID, CGID uint32
	// Stime, Rtime and Ctime are the last send, receive and change, in
	// seconds since the epoch.
	Stime, Rtime, Ctime int64
}

// ParseSysvMsg parses the contents of /proc/sysvipc/msg, as
// ParseSysvShm does /proc/sysvipc/shm.
func ParseSysvMsg(b []byte) ([]SysvMsg, error) {
	return parseSysvTable(b, "msg", "msqid", 14, func(f []string) (SysvMsg, error) {
		var m SysvMsg
		err := parseColumns(f, num(&m.Key, 10), num(&m.ID, 10), num(&m.Mode, 8), num(&m.Cbytes, 10), num(&m.Qnum, 10),
			num(&m.Lspid, 10), num(&m.Lrpid, 10), num(&m.UID, 10), num(&m.GID, 10), num(&m.CUID, 10), num(&m.CGID, 10),
			num(&m.Stime, 10), num(&m.Rtime, 10), num(&m.Ctime, 10))
		if err == nil && (m.ID < 0 || m.Mode > 0o777 || m.Lspid < 0 || m.Lrpid < 0) {
			err = fmt.Errorf("%w: message queue id %d, mode %o, pids %d %d", ErrSyntax, m.ID, m.Mode, m.Lspid, m.Lrpid)
		}
		return m, err
	})
}

// ReadSysvMsg lists the System V message queues of cryo's IPC namespace.
func ReadSysvMsg() ([]SysvMsg, error) {
	return readSysv("msg", ParseSysvMsg)
}
