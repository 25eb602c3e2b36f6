package dump

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fifo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fown"
	ghostfile "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pipe"
	pipedata "github.com/checkpoint-restore/go-criu/v8/crit/images/pipe-data"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/regfile"
	remap "github.com/checkpoint-restore/go-criu/v8/crit/images/remap-file-path"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// fileTable collects the open files of a dump: files.img entries, the
// descriptor table, and the contents that go with them.
type fileTable struct {
	pid      int
	files    []*fdinfo.FileEntry
	fds      []*fdinfo.FdinfoEntry
	byPath   map[string]uint32 // path-only REG entries (mappings, exe, cwd, root)
	pipes    []pipeData        // pipe contents, once per pipe
	fifos    []pipeData
	ghosts   []ghost
	remaps   []*remap.RemapFilePathEntry
	seen     map[uint64]bool // pipes whose data was taken
	shellJob bool
	// memfds are the memfd inodes by inode number, in the order found.
	memfds     map[uint64]*memfdObject
	memfdOrder []uint64
}

type pipeData struct {
	e    *pipedata.PipeDataEntry
	data []byte
}

type ghost struct {
	id   uint32
	e    *ghostfile.GhostFileEntry
	data []byte
}

func newFileTable(pid int, shellJob bool) *fileTable {
	return &fileTable{pid: pid, byPath: map[string]uint32{}, seen: map[uint64]bool{}, shellJob: shellJob, memfds: map[uint64]*memfdObject{}}
}

// nextID numbers file objects from 1.
func (t *fileTable) nextID() uint32 { return uint32(len(t.files) + 1) }

func zeroFown() *fown.FownEntry {
	z := proto.Uint32(0)
	return &fown.FownEntry{Uid: z, Euid: z, Signum: z, PidType: z, Pid: z}
}

// regPath returns the id of a REG entry for a path opened with flags,
// making one if needed: mappings, the executable, cwd and root refer to
// files by such entries.
func (t *fileTable) regPath(path string, flags uint32) uint32 {
	key := path + "\x00" + strconv.FormatUint(uint64(flags), 8)
	if id, ok := t.byPath[key]; ok {
		return id
	}
	id := t.nextID()
	t.files = append(t.files, &fdinfo.FileEntry{
		Type: fdinfo.FdTypes_REG.Enum(),
		Id:   proto.Uint32(id),
		Reg: &regfile.RegFileEntry{
			Id: proto.Uint32(id), Flags: proto.Uint32(flags), Pos: proto.Uint64(0),
			Fown: zeroFown(), Name: proto.String(path),
		},
	})
	t.byPath[key] = id
	return id
}

// dumpFds records every descriptor of the process. Descriptors sharing an
// open file description (dup) share one file entry.
func (t *fileTable) dumpFds() error {
	fds, err := proc.ReadFds(t.pid)
	if err != nil {
		return err
	}
	var done []int // descriptors with their own file entry
	ids := map[int]uint32{}
	for _, fd := range fds {
		info, err := proc.ReadFdinfo(t.pid, fd)
		if err != nil {
			return err
		}
		fdFlags := uint32(0)
		if info.Flags&unix.O_CLOEXEC != 0 {
			fdFlags = unix.FD_CLOEXEC
		}
		var id uint32
		for _, other := range done {
			same, err := kernel.SameFile(t.pid, fd, other)
			if err != nil {
				return fmt.Errorf("compare fd %d with fd %d: %w", fd, other, err)
			}
			if same {
				id = ids[other]
				break
			}
		}
		var typ fdinfo.FdTypes
		if id == 0 {
			if id, typ, err = t.dumpFile(fd, info); err != nil {
				return fmt.Errorf("dump fd %d: %w", fd, err)
			}
			done = append(done, fd)
			ids[fd] = id
		} else {
			typ = t.files[id-1].GetType()
		}
		t.fds = append(t.fds, &fdinfo.FdinfoEntry{
			Id: proto.Uint32(id), Flags: proto.Uint32(fdFlags), Type: typ.Enum(), Fd: proto.Uint32(uint32(fd)),
		})
	}
	return nil
}

// statusFlags are the open flags a restore reopens a file with.
func statusFlags(info proc.Fdinfo) uint32 { return info.Flags &^ unix.O_CLOEXEC }

func (t *fileTable) dumpFile(fd int, info proc.Fdinfo) (uint32, fdinfo.FdTypes, error) {
	link, err := os.Readlink(proc.Path(t.pid, "fd/"+strconv.Itoa(fd)))
	if err != nil {
		return 0, 0, err
	}
	id := t.nextID()
	switch {
	case strings.HasPrefix(link, "pipe:["):
		ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "pipe:["), "]"), 10, 32)
		if err != nil {
			return 0, 0, fmt.Errorf("parse %q: %w", link, err)
		}
		if err := t.takePipeData(fd, info, ino, &t.pipes); err != nil {
			return 0, 0, err
		}
		t.files = append(t.files, &fdinfo.FileEntry{
			Type: fdinfo.FdTypes_PIPE.Enum(), Id: proto.Uint32(id),
			Pipe: &pipe.PipeEntry{Id: proto.Uint32(id), PipeId: proto.Uint32(uint32(ino)), Flags: proto.Uint32(statusFlags(info)), Fown: zeroFown()},
		})
		return id, fdinfo.FdTypes_PIPE, nil
	case link == "anon_inode:[eventfd]":
		return t.dumpEventfd(fd, id, info)
	case link == "anon_inode:[eventpoll]":
		return t.dumpEventpoll(fd, id, info)
	case !strings.HasPrefix(link, "/"):
		return 0, 0, fmt.Errorf("%w: fd %d is %s", ErrUnsupported, fd, link)
	}
	// A memfd reads as a deleted file, but it is a shmem object: it has
	// no path to recreate it at.
	if name, ok := memfdName(link); ok && deletedPath(link) {
		if _, err := t.memfdFile(id, proc.Path(t.pid, "fd/"+strconv.Itoa(fd)), name, statusFlags(info), uint64(info.Pos)); err != nil {
			return 0, 0, fmt.Errorf("fd %d: %w", fd, err)
		}
		return id, fdinfo.FdTypes_MEMFD, nil
	}

	var st unix.Stat_t
	if err := unix.Stat(proc.Path(t.pid, "fd/"+strconv.Itoa(fd)), &st); err != nil {
		return 0, 0, err
	}
	path, deleted := strings.CutSuffix(link, " (deleted)")
	reg := &regfile.RegFileEntry{
		Id: proto.Uint32(id), Flags: proto.Uint32(statusFlags(info)), Pos: proto.Uint64(uint64(info.Pos)),
		Fown: zeroFown(), Name: proto.String(path), Mode: proto.Uint32(st.Mode),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		reg.Size = proto.Uint64(uint64(st.Size))
		if deleted {
			if err := t.takeGhost(fd, id, &st); err != nil {
				return 0, 0, err
			}
		}
	case unix.S_IFDIR:
	case unix.S_IFCHR:
		if isTTY(st.Rdev) && !t.shellJob {
			return 0, 0, fmt.Errorf("%w: fd %d is the terminal %s: dump with --shell-job", ErrUnsupported, fd, path)
		}
	case unix.S_IFIFO:
		if deleted {
			return 0, 0, fmt.Errorf("%w: fd %d is a deleted FIFO", ErrUnsupported, fd)
		}
		// A FIFO is a pipe reached through a path: a REG entry for the
		// path, a FIFO entry for the pipe.
		if err := t.takePipeData(fd, info, st.Ino, &t.fifos); err != nil {
			return 0, 0, err
		}
		t.files = append(t.files, &fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(id), Reg: reg})
		fid := t.nextID()
		t.files = append(t.files, &fdinfo.FileEntry{
			Type: fdinfo.FdTypes_FIFO.Enum(), Id: proto.Uint32(fid),
			Fifo: &fifo.FifoEntry{Id: proto.Uint32(fid), PipeId: proto.Uint32(uint32(st.Ino)), RegfId: proto.Uint32(id)},
		})
		return fid, fdinfo.FdTypes_FIFO, nil
	default:
		return 0, 0, fmt.Errorf("%w: fd %d is %s (mode %#o)", ErrUnsupported, fd, link, st.Mode)
	}
	if deleted && st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, 0, fmt.Errorf("%w: fd %d is a deleted %s", ErrUnsupported, fd, link)
	}
	t.files = append(t.files, &fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(id), Reg: reg})
	return id, fdinfo.FdTypes_REG, nil
}

// isTTY reports whether a character device is a terminal: the pty slaves
// (major 136-143), the consoles and ttys (major 4, 5).
func isTTY(rdev uint64) bool {
	major := unix.Major(rdev)
	return major == 4 || major == 5 || (major >= 136 && major <= 143)
}

// takePipeData copies what is buffered in a pipe without draining it: tee()
// from a duplicate of the target's descriptor into a pipe of cryo's.
func (t *fileTable) takePipeData(fd int, info proc.Fdinfo, ino uint64, into *[]pipeData) error {
	if t.seen[ino] {
		return nil
	}
	t.seen[ino] = true
	src, err := t.readEnd(fd, info)
	if err != nil {
		return err
	}
	defer src.Close()
	size, err := unix.FcntlInt(src.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		return fmt.Errorf("get pipe size: %w", err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, size); err != nil {
		return fmt.Errorf("grow pipe to %d bytes: %w", size, err)
	}
	n, err := unix.Tee(int(src.Fd()), p[1], size, unix.SPLICE_F_NONBLOCK)
	if errors.Is(err, unix.EAGAIN) {
		n, err = 0, nil // empty
	}
	if err != nil {
		return fmt.Errorf("tee pipe: %w", err)
	}
	data := make([]byte, n)
	for off := 0; off < len(data); {
		m, err := unix.Read(p[0], data[off:])
		if err != nil {
			return fmt.Errorf("read teed pipe data: %w", err)
		}
		off += m
	}
	*into = append(*into, pipeData{
		e:    &pipedata.PipeDataEntry{PipeId: proto.Uint32(uint32(ino)), Bytes: proto.Uint32(uint32(n)), Size: proto.Uint32(uint32(size))},
		data: data,
	})
	return nil
}

// readEnd returns a descriptor for reading the pipe behind fd: a duplicate
// by pidfd_getfd if fd is a read end, else a new read end opened through
// /proc (tee needs one to read from).
func (t *fileTable) readEnd(fd int, info proc.Fdinfo) (*os.File, error) {
	if info.Flags&unix.O_ACCMODE == unix.O_RDONLY {
		pidfd, err := unix.PidfdOpen(t.pid, 0)
		if err != nil {
			return nil, fmt.Errorf("pidfd_open: %w", err)
		}
		defer unix.Close(pidfd)
		dup, err := unix.PidfdGetfd(pidfd, fd, 0)
		if err != nil {
			return nil, fmt.Errorf("pidfd_getfd fd %d: %w", fd, err)
		}
		return os.NewFile(uintptr(dup), "pipe"), nil
	}
	return os.OpenFile(proc.Path(t.pid, "fd/"+strconv.Itoa(fd)), os.O_RDONLY|unix.O_NONBLOCK, 0)
}

// takeGhost saves the contents of an unlinked file, which a restore
// recreates and unlinks again.
func (t *fileTable) takeGhost(fd int, id uint32, st *unix.Stat_t) error {
	f, err := os.Open(proc.Path(t.pid, "fd/"+strconv.Itoa(fd)))
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("read unlinked file: %w", err)
	}
	gid := uint32(len(t.ghosts) + 1)
	t.ghosts = append(t.ghosts, ghost{id: gid, data: data, e: &ghostfile.GhostFileEntry{
		Uid: proto.Uint32(st.Uid), Gid: proto.Uint32(st.Gid), Mode: proto.Uint32(st.Mode),
		Dev: proto.Uint32(uint32(st.Dev)), Ino: proto.Uint64(st.Ino), Size: proto.Uint64(uint64(len(data))),
	}})
	t.remaps = append(t.remaps, &remap.RemapFilePathEntry{
		OrigId: proto.Uint32(id), RemapId: proto.Uint32(gid), RemapType: remap.RemapType_GHOST.Enum(),
	})
	return nil
}
