package files

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/clog"
	"github.com/cryo-cr/cryo/internal/kernel"
)

// cryo restores as root processes that are not. Every file the process
// gets by path (descriptors, FIFOs, mappings, its executable, its working
// directory) is opened once, by Verify, before anything is built:
//
//   - without following any symbolic link (openat2 RESOLVE_NO_SYMLINKS):
//     the dumped path is canonical, so a link in it now means the path
//     changed, and following it would hand the process whatever it points
//     to, /etc/shadow say;
//   - as the process itself: O_PATH on a thread with its filesystem
//     credentials (kernel.SetThreadFsCreds), where faccessat2 then tells
//     whether it may read, write or search the file;
//   - and compared with what the dump recorded of it (identity.go).
//
// The restore then opens that very inode again through cryo's descriptor
// (Path: /proc/CRYO/fd/N), so no path is resolved twice, and passes it to
// the process (deliver.go).
//
// A process may hold a descriptor or mapping it could not open itself
// now: root gave it the descriptor before it dropped privileges, or the
// file's mode changed. It had the file, so it gets it back, but only if
// it is provably the one it held: the dump recorded its device, inode
// number and birth time (cryo-file-stat.img; the birth time tells an inode
// number reused for a new file) and they are the same. A file the process may not
// open and whose identity the images do not record (a checkpoint CRIU
// made) is refused: then only the access check stands between the
// process and root's files.

// VerifyOptions says whose files Verify opens and what it lets pass.
type VerifyOptions struct {
	// Pid is the process's: its own files under /proc/PID exist only
	// once it does, and are opened by path then (Path).
	Pid int
	// Tree are the pids of the other processes of the checkpoint, live
	// or zombies, which exist by the time files are opened: their files
	// under /proc/PID are opened by path too, but their descriptors
	// (fd/N, fdinfo/N), which may not be made yet, are refused.
	Tree map[uint32]bool
	// Creds are the process's filesystem credentials, as dumped.
	Creds kernel.FsCreds
	// AllowChanged are paths restored even if they changed since the
	// dump; never one the process may not open and did not provably
	// hold.
	AllowChanged []string
	Log          *clog.Logger
}

// Verify checks and opens every file the process gets by path: the
// entries its descriptors and FIFOs refer to, and the entries of need
// (mappings, executable, working directory), each with the access
// (unix.R_OK, W_OK, X_OK bits) the process needs; and what the marks of
// its inotify and fanotify descriptors are on (fsnotify.go). Errors name the file
// and what changed. The files stay open, for Path, until Close.
func (s *Set) Verify(need map[uint32]uint32, o VerifyOptions) error {
	all := maps.Clone(need)
	if all == nil {
		all = map[uint32]uint32{}
	}
	for _, fd := range s.Fds {
		f := s.File(fd.GetId())
		switch {
		case f.GetReg() != nil:
			all[f.GetId()] |= accessOf(f.GetReg().GetFlags())
		case f.GetFifo() != nil:
			reg := s.File(f.GetFifo().GetRegfId()).GetReg()
			all[f.GetFifo().GetRegfId()] |= accessOf(reg.GetFlags())
		}
	}
	s.opened, s.ownProc, s.special = map[uint32]int{}, map[uint32]bool{}, map[uint32]bool{}
	for _, id := range slices.Sorted(maps.Keys(all)) {
		f, err := s.Reg(id)
		if err != nil {
			return err
		}
		if _, remapped := s.remaps[id]; remapped {
			continue // unlinked: recreated or linked back
		}
		if pid, rest, ok := procFile(f.GetReg().GetName()); ok && o.Pid > 0 && (pid == o.Pid || o.Tree[uint32(pid)]) {
			// A restored process's own, on procfs, where no one can
			// put a link or another file.
			if pid != o.Pid && (strings.HasPrefix(rest, "fd/") || strings.HasPrefix(rest, "fdinfo/")) {
				s.Close()
				return fmt.Errorf("%w: file %s: a descriptor of another process of the checkpoint, which may not be made yet", ErrUnsupported, f.GetReg().GetName())
			}
			s.ownProc[id] = true
			continue
		}
		fd, err := s.verify(id, all[id], o)
		if err != nil {
			s.Close()
			return fmt.Errorf("file %s: %w", f.GetReg().GetName(), err)
		}
		s.opened[id] = fd
	}
	if err := s.verifyMarks(o); err != nil {
		s.Close()
		return err
	}
	if err := s.checkLeases(o.Creds); err != nil {
		s.Close()
		return err
	}
	s.stats = nil
	return nil
}

// procFile splits a path under /proc/PID/ into the pid and the rest.
func procFile(name string) (int, string, bool) {
	rest, ok := strings.CutPrefix(name, "/proc/")
	if !ok {
		return 0, "", false
	}
	n, rest, ok := strings.Cut(rest, "/")
	pid, err := strconv.Atoi(n)
	if !ok || err != nil || pid <= 0 {
		return 0, "", false
	}
	return pid, rest, true
}

// accessOf is the access an open with flags needs.
func accessOf(flags uint32) uint32 {
	if flags&unix.O_PATH != 0 {
		return 0
	}
	switch flags & unix.O_ACCMODE {
	case unix.O_WRONLY:
		return unix.W_OK
	case unix.O_RDWR:
		return unix.R_OK | unix.W_OK
	}
	return unix.R_OK
}

func (s *Set) verify(id uint32, need uint32, o VerifyOptions) (int, error) {
	reg := s.File(id).GetReg()
	name := reg.GetName()
	// A descriptor of a symbolic link itself (O_PATH|O_NOFOLLOW) is
	// opened so: its path ends in the link.
	var nofollow int
	if reg.GetMode()&unix.S_IFMT == unix.S_IFLNK {
		nofollow = unix.O_NOFOLLOW
	}
	fd, allowed, err := openAs(o.Creds, name, need, nofollow)
	if err != nil {
		return -1, err
	}
	st, err := statx(fd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	s.special[id] = specialFile(uint32(st.Mode))
	if !allowed {
		rec, ok := s.stats[id]
		now := fileStat(id, st)
		switch {
		case !ok:
			err = fmt.Errorf("%w: fsuid %d may not %s it, and the images do not record which file the process held", ErrAccess, o.Creds.Fsuid, accessName(need))
		case rec.Dev != now.Dev || rec.Inode != now.Inode || rec.BtimeSec != now.BtimeSec || rec.BtimeNsec != now.BtimeNsec:
			err = fmt.Errorf("%w: fsuid %d may not %s it, and it is not the file the process held (inode %d on device %#x born %s at dump, %d on %#x born %s now)",
				ErrAccess, o.Creds.Fsuid, accessName(need), rec.Inode, rec.Dev, stamp(rec.BtimeSec, rec.BtimeNsec), now.Inode, now.Dev, stamp(now.BtimeSec, now.BtimeNsec))
		}
		if err != nil {
			unix.Close(fd)
			return -1, err
		}
		// The very inode the process held: it had it.
	}
	changes := s.changes(id, fd, st)
	if len(changes) == 0 {
		return fd, nil
	}
	var texts []string
	grew := reg.GetFlags()&unix.O_APPEND != 0 && st.Size >= reg.GetSize()
	for _, c := range changes {
		texts = append(texts, c.text)
		grew = grew && c.content
	}
	what := strings.Join(texts, "; ")
	switch {
	case grew:
		o.Log.Warn("append-only file grew since the dump", "file", name, "change", what)
	case slices.Contains(o.AllowChanged, name):
		o.Log.Warn("file changed since the dump, restored as asked", "file", name, "change", what)
	default:
		unix.Close(fd)
		return -1, fmt.Errorf("%w: %s (--allow-changed %s restores anyway)", ErrChanged, what, name)
	}
	return fd, nil
}

func accessName(need uint32) string {
	var verbs []string
	for _, a := range []struct {
		bit  uint32
		verb string
	}{{unix.R_OK, "read"}, {unix.W_OK, "write"}, {unix.X_OK, "execute or search"}} {
		if need&a.bit != 0 {
			verbs = append(verbs, a.verb)
		}
	}
	if len(verbs) == 0 {
		return "reach"
	}
	return strings.Join(verbs, " and ")
}

// openAs opens path O_PATH, with the open flags extra (O_NOFOLLOW), without
// following symbolic links, on a thread with the filesystem credentials c,
// and reports whether c may access the file as need says. A file c cannot
// even reach is opened as cryo, and reported not allowed.
func openAs(c kernel.FsCreds, path string, need uint32, extra int) (fd int, allowed bool, err error) {
	type result struct {
		fd      int
		allowed bool
		denied  bool // the credentials cannot reach the file
		err     error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		own, err := kernel.ThreadFsCreds()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{fd: -1, err: err}
			return
		}
		res := result{fd: -1}
		if res.err = kernel.SetThreadFsCreds(c); res.err == nil {
			res.fd, res.err = openNoSymlinks(path, extra)
			switch {
			case res.err == nil:
				res.allowed = unix.Faccessat2(res.fd, "", need, unix.AT_EMPTY_PATH|unix.AT_EACCESS) == nil
			case errors.Is(res.err, unix.EACCES):
				res.denied, res.err = true, nil
			}
		}
		if err := kernel.SetThreadFsCreds(own); err != nil {
			// The thread keeps the process's credentials: it must
			// never run anything of cryo's again. Returning without
			// unlocking ends it.
			if res.fd >= 0 {
				unix.Close(res.fd)
			}
			done <- result{fd: -1, err: fmt.Errorf("switch thread credentials back: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		done <- res
	}()
	res := <-done
	if res.denied {
		res.fd, res.err = openNoSymlinks(path, extra)
	}
	return res.fd, res.allowed, res.err
}

// openNoSymlinks opens path O_PATH with the open flags extra, refusing a
// symbolic link anywhere in it, but for its last part with O_NOFOLLOW.
func openNoSymlinks(path string, extra int) (int, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
		Flags: uint64(unix.O_PATH | unix.O_CLOEXEC | extra), Resolve: unix.RESOLVE_NO_SYMLINKS,
	})
	if errors.Is(err, unix.ELOOP) {
		return -1, fmt.Errorf("%w: a symbolic link is in its path now", ErrChanged)
	}
	if err != nil {
		return -1, fmt.Errorf("open: %w", err)
	}
	return fd, nil
}

// Path is the path through which the process opens entry id: cryo's
// descriptor of the file Verify checked, which reopens that very inode;
// for the process's own /proc files, their path.
func (s *Set) Path(id uint32) (string, error) {
	if s.ownProc[id] {
		return s.File(id).GetReg().GetName(), nil
	}
	fd, ok := s.opened[id]
	if !ok {
		return "", fmt.Errorf("file %d was not verified", id)
	}
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd), nil
}

// Close closes the descriptors Verify opened.
func (s *Set) Close() {
	for _, fd := range s.opened {
		unix.Close(fd)
	}
	s.opened = nil
	s.closeMarks()
}
