package files

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
)

// Set is the open files of a checkpoint, read from its images and checked.
type Set struct {
	dir *image.Dir
	// pid is the process whose descriptor table Fds is.
	pid int
	// Files are the files.img entries in the order of their ids (File
	// finds one by its id): descriptors, mappings, the executable, cwd
	// and root refer to them.
	Files []*pb.FileEntry
	// Fds is the descriptor table, in the order of its numbers (fd finds
	// one by its number); values, for tables of thousands.
	Fds []pb.FdinfoEntry
	pipeSet
	ghostSet
	memfdSet
	lockSet
	identitySet
	ttySet
	markSet
	tcpSet
	unixSet
	sockExtraSet
	ioUringSet
}

func imageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrImage, fmt.Sprintf(format, a...))
}

// Load reads the open files of process pid of a checkpoint, whose
// descriptor table is fdinfo-filesID.img, and checks every entry a
// descriptor refers to.
func Load(dir *image.Dir, pid int, filesID uint32) (*Set, error) {
	files, err := image.ReadAll[pb.FileEntry](dir, image.Files, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImage, err)
	}
	s := &Set{dir: dir, pid: pid, Files: files}
	slices.SortFunc(s.Files, func(a, b *pb.FileEntry) int { return cmp.Compare(a.GetId(), b.GetId()) })
	for i := 1; i < len(s.Files); i++ {
		if s.Files[i].GetId() == s.Files[i-1].GetId() {
			return nil, imageErr("files.img: id %d twice", s.Files[i].GetId())
		}
	}
	shareNoOwner(s.Files)
	for _, load := range []func() error{s.loadMemfds, s.loadPipes, s.loadGhosts, s.loadTTYs, s.loadUnix, s.loadIOUrings} {
		if err := load(); err != nil {
			return nil, err
		}
	}
	if s.Fds, err = image.ReadValues[pb.FdinfoEntry](dir, image.Fdinfo, filesID); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImage, err)
	}
	slices.SortFunc(s.Fds, func(a, b pb.FdinfoEntry) int { return cmp.Compare(a.GetFd(), b.GetFd()) })
	for i := 1; i < len(s.Fds); i++ {
		if s.Fds[i].GetFd() == s.Fds[i-1].GetFd() {
			return nil, imageErr("fd %d twice", s.Fds[i].GetFd())
		}
	}
	// A packet socket's check reads its extras.
	if err := s.loadSockExtras(); err != nil {
		return nil, err
	}
	for _, fd := range s.Fds {
		f := s.File(fd.GetId())
		switch {
		case f == nil:
			return nil, imageErr("fd %d refers to file %d, which files.img lacks", fd.GetFd(), fd.GetId())
		case f.GetType() != fd.GetType():
			return nil, imageErr("fd %d: type %v, but file %d is %v", fd.GetFd(), fd.GetType(), f.GetId(), f.GetType())
		}
		if err := s.Check(f); err != nil {
			return nil, fmt.Errorf("fd %d: %w", fd.GetFd(), err)
		}
	}
	if err := s.loadLocks(); err != nil {
		return nil, err
	}
	if err := s.loadStats(); err != nil {
		return nil, err
	}
	return s, nil
}

// File returns the entry id, or nil.
func (s *Set) File(id uint32) *pb.FileEntry {
	if i, ok := slices.BinarySearchFunc(s.Files, id, func(f *pb.FileEntry, id uint32) int { return cmp.Compare(f.GetId(), id) }); ok {
		return s.Files[i]
	}
	return nil
}

// fd returns the table's descriptor number n, or nil.
func (s *Set) fd(n uint32) *pb.FdinfoEntry {
	if i, ok := slices.BinarySearchFunc(s.Fds, n, func(e pb.FdinfoEntry, n uint32) int { return cmp.Compare(e.GetFd(), n) }); ok {
		return &s.Fds[i]
	}
	return nil
}

// Check checks one entry with its kind.
func (s *Set) Check(f *pb.FileEntry) error {
	k, ok := kindOf(f.GetType())
	if !ok {
		return fmt.Errorf("%w: file %d of type %v", ErrUnsupported, f.GetId(), f.GetType())
	}
	return k.check(s, f)
}

// Reg returns the regular-file entry id, or an error if it is none: the
// executable, cwd, root and file mappings refer to such entries.
func (s *Set) Reg(id uint32) (*pb.FileEntry, error) {
	f := s.File(id)
	if f == nil || f.GetReg() == nil {
		return nil, imageErr("file %d is not a regular file entry", id)
	}
	return f, nil
}
