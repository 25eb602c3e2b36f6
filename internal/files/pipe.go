package files

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// pipeKind is an end of a pipe. The data buffered in a pipe is saved once
// per pipe in pipes-data.img, read with tee() so that nothing is drained,
// and written back into the pipe made at restore.
type pipeKind struct{}

func (pipeKind) typ() pb.FdTypes { return pb.FdTypes_PIPE }

func (pipeKind) claims(d *desc) bool { return strings.HasPrefix(d.link, "pipe:[") }

func (pipeKind) dump(t *Table, d *desc) (uint32, error) {
	ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(d.link, "pipe:["), "]"), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("parse %q: %w", d.link, err)
	}
	if err := t.takePipeData(d, ino, &t.pipes); err != nil {
		return 0, err
	}
	id := t.nextID()
	return t.add(&pb.FileEntry{
		Type: pb.FdTypes_PIPE, Id: id,
		Entry: &pb.PipeEntry{Id: id, PipeId: uint32(ino), Flags: statusFlags(d.info), Fown: &pb.FownEntry{}},
	}), nil
}

func (pipeKind) check(s *Set, f *pb.FileEntry) error {
	if f.GetPipe() == nil {
		return imageErr("file %d: PIPE without a pipe entry", f.GetId())
	}
	return nil
}

// open returns a new open file description of the end of a pipe that f
// stands for, making the pipe in cryo on first use. Each entry is a
// description of its own, as at the dump: the end pipe() made, or the end
// reopened through /proc, which makes a new one (where a dup would share
// one). The status flags tell which an entry was: open() adds
// O_LARGEFILE, which fcntl cannot set nor clear, and pipe() does not
// (cryoPipe.take).
func (pipeKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	id := f.GetPipe().GetPipeId()
	if p, ok := r.shared.cryoPipes[id]; ok {
		// Made in cryo for an end in flight (unixsk_restore.go).
		return p.take(f.GetPipe().GetFlags())
	}
	if path := r.sharedPipe(id); path != "" {
		// Made and filled by another process of the tree.
		return openCryoPipe(path, f.GetPipe().GetFlags())
	}
	// Its other end may be a process's outside the checkpoint (a
	// pipeline's, a supervisor's), which holds it still, with whatever
	// it has not read: the same pipe, not a new one whose other end
	// nobody holds.
	if fd, err := r.openLivePipe(id, f.GetPipe().GetFlags()); fd >= 0 || err != nil {
		return fd, err
	}
	p, ok := r.pipes[id]
	if !ok {
		p = &pipeMade{data: r.set.pipes[id]}
		if err := unix.Pipe2(p.ends[:], unix.O_CLOEXEC); err != nil {
			return -1, fmt.Errorf("make pipe: %w", err)
		}
		if r.pipes == nil {
			r.pipes = map[uint32]*pipeMade{}
		}
		r.pipes[id] = p
	}
	return p.take(f.GetPipe().GetFlags())
}

// openLivePipe opens pipe id, in cryo, with flags, where a process that
// may open it (its user's, for one not root) still holds it, or returns
// -1 if none does. Those are processes outside the checkpoint: the dumped
// ones are gone, their pids the restore's, and the pipes a restore makes
// are new ones. The open pipes of the system are listed once per restore;
// a descriptor closed or reused since is passed over.
func (r *Restorer) openLivePipe(id, flags uint32) (int, error) {
	sh := r.shared
	linkOf := func(id uint32) string { return "pipe:[" + strconv.FormatUint(uint64(id), 10) + "]" }
	if sh.livePipes == nil {
		sh.livePipes = map[uint32][]fdRef{}
		want := map[string]uint32{}
		for _, f := range r.set.Files {
			if p := f.GetPipe(); p != nil {
				want[linkOf(p.GetPipeId())] = p.GetPipeId()
			}
		}
		pids, err := proc.ReadPids()
		if err != nil {
			return -1, err
		}
		for _, pid := range pids {
			fds, err := proc.ReadFds(pid)
			if err != nil {
				continue // gone, or a kernel thread's
			}
			for _, fd := range fds {
				l, err := os.Readlink(proc.Path(pid, "fd/"+strconv.Itoa(fd)))
				if ino, ok := want[l]; ok && err == nil {
					sh.livePipes[ino] = append(sh.livePipes[ino], fdRef{pid: pid, fd: fd})
				}
			}
		}
	}
	for _, ref := range sh.livePipes[id] {
		st, err := proc.ReadStatus(ref.pid)
		if err != nil || r.creds != nil && r.creds.EUID != 0 && st.Uid[1] != r.creds.EUID {
			continue
		}
		path := proc.Path(ref.pid, "fd/"+strconv.Itoa(ref.fd))
		if l, err := os.Readlink(path); err != nil || l != linkOf(id) {
			continue
		}
		fd, err := openCryoPipe(path, flags)
		if err != nil {
			continue
		}
		var fst unix.Stat_t
		if unix.Fstat(fd, &fst) != nil || fst.Mode&unix.S_IFMT != unix.S_IFIFO || fst.Ino != uint64(id) {
			unix.Close(fd)
			continue
		}
		return fd, nil
	}
	return -1, nil
}

// pipeData is what a pipe or FIFO holds at the dump.
type pipeData struct {
	e    *pb.PipeDataEntry
	data []byte
}

// pipeTable is what a dump saves of pipes and FIFOs: their data, once per
// pipe.
type pipeTable struct {
	pipes, fifos []pipeData
	seen         map[uint64]bool // pipes whose data was taken
}

// takePipeData copies what is buffered in a pipe without draining it: tee()
// from a duplicate of the target's descriptor into a pipe of cryo's.
func (t *Table) takePipeData(d *desc, ino uint64, into *[]pipeData) error {
	if t.seen[ino] {
		return nil
	}
	t.seen[ino] = true
	src, err := t.readEnd(d)
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
	// One read takes all that is buffered, but stops at the end of a
	// packet, a packet-mode (O_DIRECT) writer's: the images keep bytes,
	// not packets.
	data := make([]byte, n)
	m, err := unix.Read(p[0], data)
	if err != nil {
		return fmt.Errorf("read teed pipe data: %w", err)
	}
	if int64(m) < n {
		return fmt.Errorf("%w: %s holds packets of a packet-mode (O_DIRECT) writer, whose boundaries cannot be kept", ErrUnsupported, d)
	}
	*into = append(*into, pipeData{
		e:    &pb.PipeDataEntry{PipeId: uint32(ino), Bytes: uint32(n), Size: pb.Uint32(uint32(size))},
		data: data,
	})
	return nil
}

// readEnd returns a descriptor for reading the pipe behind d: a duplicate
// by pidfd_getfd if d is a read end, else a new read end opened through
// /proc (tee needs one to read from).
func (t *Table) readEnd(d *desc) (*os.File, error) {
	if d.info.Flags&unix.O_ACCMODE == unix.O_RDONLY {
		dup, err := kernel.Getfd(t.view, d.fd)
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(dup), "pipe"), nil
	}
	return os.OpenFile(d.path, os.O_RDONLY|unix.O_NONBLOCK, 0)
}

func (p *pipeTable) write(dir *image.Dir) error {
	for _, w := range []struct {
		kind image.Kind
		data []pipeData
	}{{image.PipesData, p.pipes}, {image.FifoData, p.fifos}} {
		if err := writeWithPayloads(dir, w.kind, 0, len(w.data), func(i int) (pb.Message, []byte) {
			return w.data[i].e, w.data[i].data
		}); err != nil {
			return err
		}
	}
	return nil
}

// pipeSet is the size and buffered data of a checkpoint's pipes and FIFOs,
// by pipe id.
type pipeSet struct {
	pipes, fifos map[uint32]pipeData
}

// loadPipes reads the pipes' and FIFOs' data, which must be there when
// the checkpoint has pipes or FIFOs: without it their data would be lost.
func (s *Set) loadPipes() (err error) {
	for _, w := range []struct {
		typ  pb.FdTypes
		kind image.Kind
		data *map[uint32]pipeData
	}{{pb.FdTypes_PIPE, image.PipesData, &s.pipes}, {pb.FdTypes_FIFO, image.FifoData, &s.fifos}} {
		*w.data, err = readPipeData(s.dir, w.kind)
		if errors.Is(err, fs.ErrNotExist) {
			*w.data = map[uint32]pipeData{}
			for _, f := range s.Files {
				if f.GetType() == w.typ {
					return imageErr("%s is missing: file %d is a %v, whose data it holds", w.kind.FileName(0), f.GetId(), w.typ)
				}
			}
			err = nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readPipeData reads pipes-data.img or fifo-data.img: records each
// followed by the pipe's buffered bytes.
func readPipeData(dir *image.Dir, k image.Kind) (map[uint32]pipeData, error) {
	out := map[uint32]pipeData{}
	r, err := dir.Open(k, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImage, err)
	}
	defer r.Close()
	for {
		e := &pb.PipeDataEntry{}
		if err := r.Next(e); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrImage, err)
		}
		data, err := readPipeBytes(r.Payload(), e.GetBytes())
		if err != nil {
			return nil, fmt.Errorf("%w: %s data of pipe %d: %w", ErrImage, k, e.GetPipeId(), err)
		}
		out[e.GetPipeId()] = pipeData{e: e, data: data}
	}
}

// readPipeBytes reads the n bytes of a pipe's data. Up to 64 KiB, the
// size of a pipe's buffer by default, they are read into a buffer of
// their size (io.ReadAll's starts at 512 bytes: 2,000 pipes of a few
// bytes each took 1 MB); more grows as it comes, so that a corrupt
// count cannot make a restore allocate it.
func readPipeBytes(r io.Reader, n uint32) ([]byte, error) {
	if n > 64<<10 {
		return io.ReadAll(r)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return b, err
}

// pipeRestorer holds the pipes of the group being opened, by pipe id.
type pipeRestorer struct {
	pipes map[uint32]*pipeMade
}

// pipeMade is a pipe made in cryo for the group being opened, and what
// it held.
type pipeMade struct {
	cryoPipe
	data pipeData
}

// group makes the entries of one pipe together.
func (pipeKind) group(_ *Restorer, f *pb.FileEntry) (uint32, bool) {
	return f.GetPipe().GetPipeId(), true
}

// groupOpened gives the pipe of the group just opened its size and data
// back, and closes cryo's ends of it: its entries have theirs.
func (pipeKind) groupOpened(r *Restorer) error {
	var err error
	for id, p := range r.pipes {
		if err == nil {
			if err = fillPipeFd(p.ends[1], int(p.data.e.GetSize()), p.data.data); err != nil {
				err = fmt.Errorf("pipe %d: %w", id, err)
			}
		}
		closeAll(p.ends[:])
	}
	r.pipes = nil
	return err
}

// fillPipeFd gives the pipe or FIFO that cryo's descriptor dup writes to
// size (0: left as it is), then data.
func fillPipeFd(dup, size int, data []byte) error {
	if size == 0 && len(data) == 0 {
		return nil
	}
	cur, err := unix.FcntlInt(uintptr(dup), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		return fmt.Errorf("read pipe size: %w", err)
	}
	if size != 0 && size != cur {
		if cur, err = unix.FcntlInt(uintptr(dup), unix.F_SETPIPE_SZ, size); err != nil {
			return fmt.Errorf("set pipe size to %d bytes: %w", size, err)
		}
	}
	if cur < len(data) {
		if _, err := unix.FcntlInt(uintptr(dup), unix.F_SETPIPE_SZ, len(data)); err != nil {
			return fmt.Errorf("grow pipe to %d bytes: %w", len(data), err)
		}
	}
	for len(data) > 0 {
		n, err := unix.Write(dup, data)
		if err != nil {
			return fmt.Errorf("refill: %w", err)
		}
		data = data[n:]
	}
	return nil
}
