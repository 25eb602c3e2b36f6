package proc

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// Fdinfo is /proc/PID/fdinfo/FD: the common fields, then the lines that
// depend on the kind of file.
type Fdinfo struct {
	// Pos is the file offset.
	Pos int64
	// Flags are the O_* open flags, O_CLOEXEC included if set on the fd.
	Flags uint32
	// MntID is the mount ID of the file, as in /proc/PID/mountinfo.
	MntID int
	// Ino is the inode number; 0 on kernels that do not print it.
	Ino uint64
	// Extra are the other lines in order, e.g. "eventfd-count", "tfd" (one
	// per epoll target), "lock", "sigmask". Keys repeat.
	Extra []KeyValue
	// Uring is the text from an io_uring's "SqMask:" line on, whose
	// sections the key-value lines do not describe (IOUring parses it);
	// nil for other files.
	Uring []byte
}

// KeyValue is one line of a "Key: value" file. Key is the text before the
// first colon, so some lines have spaces in it ("inotify wd", "settime
// flags"); Value is the rest without surrounding blanks.
type KeyValue struct{ Key, Value string }

// Lookup gives the value of the first Extra line with the key.
func (f Fdinfo) Lookup(key string) (string, bool) {
	i := slices.IndexFunc(f.Extra, func(kv KeyValue) bool { return kv.Key == key })
	if i < 0 {
		return "", false
	}
	return f.Extra[i].Value, true
}

// ParseFdinfo parses the contents of /proc/PID/fdinfo/FD.
func ParseFdinfo(b []byte) (Fdinfo, error) {
	var f Fdinfo
	// An io_uring's lines follow the common ones; some have no colon.
	if i := bytes.Index(b, []byte("\nSqMask:")); i >= 0 {
		b, f.Uring = b[:i+1], bytes.Clone(b[i+1:])
	}
	err := parseFields(b, []field{
		{key: "pos", parse: num(&f.Pos, 10)},
		{key: "flags", parse: num(&f.Flags, 8)},
		{key: "mnt_id", parse: num(&f.MntID, 10)},
		{key: "ino", optional: true, parse: num(&f.Ino, 10)},
	}, func(k, v string) {
		f.Extra = append(f.Extra, KeyValue{k, v})
	})
	if err != nil {
		return Fdinfo{}, fmt.Errorf("parse fdinfo: %w", err)
	}
	return f, nil
}

// ReadFdinfo reads and parses /proc/PID/fdinfo/FD; pid 0 means the calling
// process.
func ReadFdinfo(pid, fd int) (Fdinfo, error) {
	b, err := readSmall(Path(pid, "fdinfo/"+strconv.Itoa(fd)))
	if err != nil {
		return Fdinfo{}, fmt.Errorf("read fdinfo: %w", err)
	}
	return ParseFdinfo(b)
}

// readSmall reads a file of /proc with plain system calls: a dump reads
// them with the process frozen, one per descriptor for fdinfo, and
// os.ReadFile's other calls (fstat, and four fcntl and an epoll_ctl for
// the poller's registration) were a large part of their cost.
func readSmall(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	b := make([]byte, 0, 512)
	for {
		if len(b) == cap(b) {
			b = slices.Grow(b, cap(b))
		}
		n, err := unix.Read(fd, b[len(b):cap(b)])
		switch {
		case err == unix.EINTR:
		case err != nil:
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		case n == 0:
			return b, nil
		default:
			b = b[:len(b)+n]
		}
	}
}

// Open opens a file of /proc, read-only or as flag says, without the
// poller's registration os.Open attempts (four fcntl and an epoll_ctl,
// which /proc files refuse): a dump opens them with the process frozen.
func Open(path string, flag int) (*os.File, error) {
	fd, err := unix.Open(path, flag|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// ReadFds lists the open file descriptors of a process, sorted; pid 0 means
// the calling process, and then the list includes the descriptor that was
// open to read the directory, closed on return.
func ReadFds(pid int) ([]int, error) {
	fds, err := readIDs(Path(pid, "fd"))
	if err != nil {
		return nil, fmt.Errorf("read fds: %w", err)
	}
	return fds, nil
}

// TTYIndex parses the "tty-index" line of a pseudo-terminal master's
// fdinfo: the number of its slave, /dev/pts/N.
func (f Fdinfo) TTYIndex() (uint32, error) {
	v, ok := f.Lookup("tty-index")
	if !ok {
		return 0, fmt.Errorf("%w: no tty-index line", ErrSyntax)
	}
	n, err := parseNum[uint32](v, 10)
	if err != nil {
		return 0, fmt.Errorf("tty-index: %w", err)
	}
	return n, nil
}
