package restore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"
)

// openFiles recreates the descriptor table: every descriptor at its number
// with its flags and position. Descriptors that shared an open file
// description (dup) share one again. Files are first opened at numbers
// above every target, so that making one never takes the number another
// must have, then duplicated into place.
func (r *restorer) openFiles() error {
	for _, fd := range r.c.fds {
		r.tempBase = max(r.tempBase, uint64(fd.GetFd())+1)
	}
	// Start from an empty table but the memfds that mapVMAs made: the
	// stub's descriptors are cryo's.
	var memfds []uint64
	for _, n := range r.memfds {
		memfds = append(memfds, n)
	}
	if err := r.closeAllBut(memfds); err != nil {
		return fmt.Errorf("close the stub's descriptors: %w", err)
	}
	for id, n := range r.memfds {
		m, err := r.lift(n)
		if err != nil {
			return err
		}
		r.memfds[id] = m
	}
	var cleanup []string
	defer func() {
		for _, p := range cleanup {
			os.Remove(p)
		}
	}()
	pipes := map[uint32]*pipeEnds{}
	temps := map[uint32]uint64{} // file id -> its descriptor above the targets
	for _, fd := range r.c.fds {
		id := fd.GetId()
		if _, ok := temps[id]; ok {
			continue
		}
		f := r.c.files[id]
		var n uint64
		var err error
		switch f.GetType() {
		case fdinfo.FdTypes_REG:
			var path string
			if path, err = r.regPath(f, &cleanup); err == nil {
				n, err = r.openReg(path, f)
			}
		case fdinfo.FdTypes_PIPE:
			n, err = r.openPipe(f, pipes)
		case fdinfo.FdTypes_FIFO:
			n, err = r.openFIFO(f)
		case fdinfo.FdTypes_EVENTFD:
			n, err = r.openEventfd(f)
		case fdinfo.FdTypes_EVENTPOLL:
			n, err = r.openEventpoll(f)
		case fdinfo.FdTypes_MEMFD:
			n, err = r.openMemfd(f)
		}
		if err != nil {
			return fmt.Errorf("fd %d (%v): %w", fd.GetFd(), f.GetType(), err)
		}
		temps[id] = n
	}
	if err := r.fillPipes(pipes); err != nil {
		return err
	}
	// Memfds no VMA maps were made just now.
	if err := r.sealMemfds(); err != nil {
		return err
	}
	for _, fd := range r.c.fds {
		if err := r.dupTo(temps[fd.GetId()], uint64(fd.GetFd()), fd.GetFlags()); err != nil {
			return fmt.Errorf("fd %d: %w", fd.GetFd(), err)
		}
	}
	for _, n := range temps {
		if err := r.sys(unix.SYS_CLOSE, n); err != nil {
			return err
		}
	}
	for id, n := range r.memfds {
		if err := r.sys(unix.SYS_CLOSE, n); err != nil {
			return err
		}
		delete(r.memfds, id)
	}
	// Only now are the targets at the numbers the registrations name.
	return r.addEpollTargets()
}

// lift moves a descriptor of the process above every target number.
func (r *restorer) lift(n uint64) (uint64, error) {
	m, err := r.tr.Syscall(r.pid, unix.SYS_FCNTL, n, unix.F_DUPFD_CLOEXEC, r.tempBase)
	if err != nil {
		return 0, fmt.Errorf("move descriptor %d above %d: %w", n, r.tempBase, err)
	}
	return m, r.sys(unix.SYS_CLOSE, n)
}

// dupTo makes descriptor to a duplicate of from, close-on-exec if the
// image says so.
func (r *restorer) dupTo(from, to uint64, fdFlags uint32) error {
	flags := uint64(0)
	if fdFlags&unix.FD_CLOEXEC != 0 {
		flags = unix.O_CLOEXEC
	}
	if err := r.sys(unix.SYS_DUP3, from, to, flags); err != nil {
		return fmt.Errorf("dup %d to %d: %w", from, to, err)
	}
	return nil
}

// regPath is the path to reopen a regular-file entry at: its own, the
// caller's terminal for a terminal of a shell job, or a recreated copy of
// an unlinked file, which is unlinked again once open.
func (r *restorer) regPath(f *fdinfo.FileEntry, cleanup *[]string) (string, error) {
	name := f.Reg.GetName()
	if g, ok := r.c.ghosts[f.GetId()]; ok {
		p, err := recreateGhost(name, g)
		if err != nil {
			return "", err
		}
		*cleanup = append(*cleanup, p)
		return p, nil
	}
	if isTTYPath(name) {
		if !r.opts.ShellJob {
			return "", fmt.Errorf("%w: %s is a terminal: restore with --shell-job", ErrUnsupported, name)
		}
		tty, err := os.Readlink("/proc/self/fd/0")
		if err != nil || !isTTYPath(tty) {
			return "", fmt.Errorf("--shell-job: cryo's standard input is not a terminal")
		}
		return tty, nil
	}
	return name, nil
}

func isTTYPath(p string) bool {
	return strings.HasPrefix(p, "/dev/pts/") || strings.HasPrefix(p, "/dev/tty") || p == "/dev/console"
}

// recreateGhost writes an unlinked file's contents back, at its old path
// if free, else beside it.
func recreateGhost(name string, g ghost) (string, error) {
	mode := os.FileMode(g.e.GetMode() & 0o7777)
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		f, err = os.CreateTemp(filepath.Dir(name), filepath.Base(name)+".cryo-ghost-*")
	}
	if err != nil {
		return "", fmt.Errorf("recreate unlinked file %s: %w", name, err)
	}
	_, err = f.Write(g.data)
	err = errors.Join(err, f.Chmod(mode), f.Chown(int(g.e.GetUid()), int(g.e.GetGid())), f.Close())
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("recreate unlinked file %s: %w", name, err)
	}
	return f.Name(), nil
}

// openReg opens a regular-file entry in the process at its position.
func (r *restorer) openReg(path string, f *fdinfo.FileEntry) (uint64, error) {
	flags := uint64(f.Reg.GetFlags()) &^ (unix.O_CREAT | unix.O_EXCL | unix.O_TRUNC)
	n, err := r.open(path, flags, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	if n, err = r.lift(n); err != nil {
		return 0, err
	}
	if pos := f.Reg.GetPos(); pos != 0 {
		if _, err := r.tr.Syscall(r.pid, unix.SYS_LSEEK, n, pos, unix.SEEK_SET); err != nil {
			return 0, fmt.Errorf("seek %s to %d: %w", path, pos, err)
		}
	}
	return n, nil
}

// pipeEnds are the two descriptors of a pipe made in the process.
type pipeEnds struct {
	read, write uint64
	data        []byte
}

// openPipe returns the end of a pipe that f stands for, making the pipe on
// first use.
func (r *restorer) openPipe(f *fdinfo.FileEntry, pipes map[uint32]*pipeEnds) (uint64, error) {
	id := f.Pipe.GetPipeId()
	p, ok := pipes[id]
	if !ok {
		scratch, err := r.scratch()
		if err != nil {
			return 0, err
		}
		if err := r.sys(unix.SYS_PIPE2, scratch, unix.O_CLOEXEC); err != nil {
			return 0, fmt.Errorf("make pipe: %w", err)
		}
		var b [8]byte
		if err := r.tr.ReadMem(scratch, b[:]); err != nil {
			return 0, err
		}
		p = &pipeEnds{data: r.c.pipes[id]}
		if p.read, err = r.lift(uint64(binary.LittleEndian.Uint32(b[0:]))); err != nil {
			return 0, err
		}
		if p.write, err = r.lift(uint64(binary.LittleEndian.Uint32(b[4:]))); err != nil {
			return 0, err
		}
		pipes[id] = p
	}
	end := p.read
	if f.Pipe.GetFlags()&unix.O_ACCMODE == unix.O_WRONLY {
		end = p.write
	}
	// A fresh descriptor for this entry, with the entry's status flags.
	n, err := r.tr.Syscall(r.pid, unix.SYS_FCNTL, end, unix.F_DUPFD_CLOEXEC, r.tempBase)
	if err != nil {
		return 0, err
	}
	if err := r.sys(unix.SYS_FCNTL, n, unix.F_SETFL, uint64(f.Pipe.GetFlags())); err != nil {
		return 0, fmt.Errorf("set pipe flags %#x: %w", f.Pipe.GetFlags(), err)
	}
	return n, nil
}

// openFIFO opens a FIFO by its path. A read-only or write-only open would
// block until the other side shows up, so a read-write descriptor holds
// the FIFO open meanwhile.
func (r *restorer) openFIFO(f *fdinfo.FileEntry) (uint64, error) {
	reg := r.c.files[f.Fifo.GetRegfId()]
	path := reg.Reg.GetName()
	holder, err := r.open(path, unix.O_RDWR|unix.O_NONBLOCK, 0)
	if err != nil {
		return 0, fmt.Errorf("open FIFO %s: %w", path, err)
	}
	defer r.sys(unix.SYS_CLOSE, holder)
	n, err := r.openReg(path, reg)
	if err != nil {
		return 0, err
	}
	if data := r.c.fifos[f.Fifo.GetPipeId()]; len(data) > 0 {
		delete(r.c.fifos, f.Fifo.GetPipeId()) // fill once
		if err := r.writeThrough(holder, data); err != nil {
			return 0, fmt.Errorf("refill FIFO %s: %w", path, err)
		}
	}
	return n, nil
}

// fillPipes writes the buffered data back into each pipe and closes the
// ends made with it: the process keeps the duplicates its entries got.
func (r *restorer) fillPipes(pipes map[uint32]*pipeEnds) error {
	for id, p := range pipes {
		if err := r.writeThrough(p.write, p.data); err != nil {
			return fmt.Errorf("refill pipe %d: %w", id, err)
		}
		for _, end := range []uint64{p.read, p.write} {
			if err := r.sys(unix.SYS_CLOSE, end); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeThrough writes data into a pipe or FIFO descriptor of the process
// from outside, through a duplicate taken with pidfd_getfd.
func (r *restorer) writeThrough(fd uint64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	dup, err := r.getfd(fd)
	if err != nil {
		return err
	}
	defer unix.Close(dup)
	if size, err := unix.FcntlInt(uintptr(dup), unix.F_GETPIPE_SZ, 0); err == nil && size < len(data) {
		if _, err := unix.FcntlInt(uintptr(dup), unix.F_SETPIPE_SZ, len(data)); err != nil {
			return fmt.Errorf("grow pipe to %d bytes: %w", len(data), err)
		}
	}
	for len(data) > 0 {
		n, err := unix.Write(dup, data)
		if err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// restoreFS sets the working directory, root and umask.
func (r *restorer) restoreFS() error {
	root := r.c.files[r.c.fs.GetRootId()].Reg.GetName()
	if root != "/" {
		return fmt.Errorf("%w: root directory %s", ErrUnsupported, root)
	}
	cwd := r.c.files[r.c.fs.GetCwdId()].Reg.GetName()
	scratch, err := r.scratch()
	if err != nil {
		return err
	}
	if err := r.writeString(scratch, cwd); err != nil {
		return err
	}
	if err := r.sys(unix.SYS_CHDIR, scratch); err != nil {
		return fmt.Errorf("chdir %s: %w", cwd, err)
	}
	if err := r.sys(unix.SYS_UMASK, uint64(r.c.fs.GetUmask())); err != nil {
		return fmt.Errorf("umask: %w", err)
	}
	return nil
}

// getfd returns cryo's own duplicate of descriptor fd of the process, to
// fill it from outside.
func (r *restorer) getfd(fd uint64) (int, error) {
	pidfd, err := unix.PidfdOpen(r.pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", r.pid, err)
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, int(fd), 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_getfd %d: %w", fd, err)
	}
	return dup, nil
}
