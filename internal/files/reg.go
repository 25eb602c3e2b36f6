package files

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/regfile"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// regKind is a file reached by its path: a regular file (an unlinked one
// too: ghost.go), a directory, or a character device such as /dev/null
// or, for a shell job, the terminal.
type regKind struct{}

func (regKind) typ() fdinfo.FdTypes { return fdinfo.FdTypes_REG }

func (regKind) claims(d *desc) bool {
	if !strings.HasPrefix(d.link, "/") {
		return false
	}
	switch d.mode() {
	case unix.S_IFREG, unix.S_IFDIR, unix.S_IFCHR:
		return true
	}
	return false
}

func (regKind) dump(t *Table, d *desc) (uint32, error) {
	path, deleted := strings.CutSuffix(d.link, " (deleted)")
	id := t.nextID()
	reg := regEntry(id, path, d)
	if !deleted {
		if err := t.noteStat(id, d.path); err != nil {
			return 0, err
		}
	}
	switch d.mode() {
	case unix.S_IFREG:
		reg.Size = proto.Uint64(uint64(d.st.Size))
		if deleted {
			if err := t.takeGhost(d, id); err != nil {
				return 0, err
			}
		}
	case unix.S_IFDIR:
		if deleted {
			return 0, fmt.Errorf("%w: fd %d is the deleted directory %s", ErrUnsupported, d.fd, path)
		}
	case unix.S_IFCHR:
		if deleted {
			return 0, fmt.Errorf("%w: fd %d is the deleted device %s", ErrUnsupported, d.fd, path)
		}
		if isTTY(d.st.Rdev) && !t.shellJob {
			return 0, fmt.Errorf("%w: fd %d is the terminal %s: dump with --shell-job", ErrUnsupported, d.fd, path)
		}
	}
	return t.add(&fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(id), Reg: reg}), nil
}

// regEntry is the reg entry of a descriptor d reached at path.
func regEntry(id uint32, path string, d *desc) *regfile.RegFileEntry {
	return &regfile.RegFileEntry{
		Id: proto.Uint32(id), Flags: proto.Uint32(statusFlags(d.info)), Pos: proto.Uint64(uint64(d.info.Pos)),
		Fown: zeroFown(), Name: proto.String(path), Mode: proto.Uint32(d.st.Mode),
	}
}

// isTTY reports whether a character device is a terminal: the pty slaves
// (major 136-143), the consoles and ttys (major 4, 5).
func isTTY(rdev uint64) bool {
	major := unix.Major(rdev)
	return major == 4 || major == 5 || (major >= 136 && major <= 143)
}

// RegPath returns the id of a REG entry for a path opened with flags,
// making one if needed: mappings, the executable, cwd and root refer to
// files by such entries. via is a /proc path that reaches the file the
// process uses (map_files/..., exe, cwd, root), whose identity the entry
// records.
func (t *Table) RegPath(path, via string, flags uint32) (uint32, error) {
	var err error
	id := t.keyed(path+"\x00"+strconv.FormatUint(uint64(flags), 8), func(id uint32) *fdinfo.FileEntry {
		reg := &regfile.RegFileEntry{
			Id: proto.Uint32(id), Flags: proto.Uint32(flags), Pos: proto.Uint64(0),
			Fown: zeroFown(), Name: proto.String(path),
		}
		err = t.identify(reg, via)
		return &fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(id), Reg: reg}
	})
	if err != nil {
		return 0, fmt.Errorf("record %s: %w", path, err)
	}
	return id, nil
}

func (regKind) check(s *Set, f *fdinfo.FileEntry) error {
	if f.Reg == nil {
		return imageErr("file %d: REG without a reg entry", f.GetId())
	}
	return nil
}

func (regKind) open(r *Restorer, f *fdinfo.FileEntry) (uint64, error) {
	path, err := r.regPath(f)
	if err != nil {
		return 0, err
	}
	n, err := r.reopen(path, f.Reg.GetFlags(), f.Reg.GetPos())
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.Reg.GetName(), err)
	}
	return n, nil
}

// regPath is the path to reopen a regular-file entry at: its own, the
// caller's terminal for a terminal of a shell job, or a recreated copy of
// an unlinked file, which is unlinked again once open.
func (r *Restorer) regPath(f *fdinfo.FileEntry) (string, error) {
	name := f.Reg.GetName()
	if g, ok := r.set.ghosts[f.GetId()]; ok {
		p, err := recreateGhost(name, g)
		if err != nil {
			return "", err
		}
		r.cleanup = append(r.cleanup, p)
		return p, nil
	}
	if isTTYPath(name) {
		if !r.shellJob {
			return "", fmt.Errorf("%w: %s is a terminal: restore with --shell-job", ErrUnsupported, name)
		}
		tty, err := os.Readlink("/proc/self/fd/0")
		if err != nil || !isTTYPath(tty) {
			return "", fmt.Errorf("--shell-job: cryo's standard input is not a terminal")
		}
		return tty, nil
	}
	return r.set.Path(f.GetId())
}

func isTTYPath(p string) bool {
	return strings.HasPrefix(p, "/dev/pts/") || strings.HasPrefix(p, "/dev/tty") || p == "/dev/console"
}
