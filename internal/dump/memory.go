package dump

import (
	"fmt"
	"math/bits"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// area is a VMA whose pages may be dumped, and where they come from. It
// does not point to the VMA's record, which is written to the mm image as
// soon as it is made: a dump holds every area of a snapshot, and 60,000
// records are 6 MB.
type area struct {
	start, end uint64
	// shmid and base place the pages of shared anonymous memory in their
	// object: base is the address of its offset 0.
	shmid, base uint64
	// dump says which present pages of the VMA to copy, nil for none.
	dump func(pagemapEntry uint64) bool
	// all copies every page of the VMA, present or not (the vDSO).
	all bool
	// viaMem reads through /proc/PID/mem, which can read pages that
	// process_vm_readv cannot (PROT_NONE, execute-only).
	viaMem bool
	// shared marks shared anonymous memory, whose contents are stored
	// once per object (shmid), at their offsets in the object.
	shared bool
	// noFork marks an area a fork does not copy (MADV_DONTFORK,
	// MADV_WIPEONFORK).
	noFork bool
}

// mappedFile is the file an area maps, which the files table records
// and the area's shmid names: a path, or a memfd's name; both "" for
// none.
type mappedFile struct {
	path, memfd string
	// flags is the access mode the file is open with: for writing when a
	// shared mapping may become writable (smaps "mw"), which the kernel
	// allows only of a file open for writing, whatever the mapping's
	// protection now.
	flags uint32
}

// madvise bits of vma_entry.madv: 1 << MADV_*, from the VmFlags that the
// corresponding madvise sets.
var madvFlags = []struct {
	flag proc.VmFlags
	madv uint
}{
	{proc.VmRandRead, unix.MADV_RANDOM},
	{proc.VmSeqRead, unix.MADV_SEQUENTIAL},
	{proc.VmDontCopy, unix.MADV_DONTFORK},
	{proc.VmMergeable, unix.MADV_MERGEABLE},
	{proc.VmHugePage, unix.MADV_HUGEPAGE},
	{proc.VmNoHugePage, unix.MADV_NOHUGEPAGE},
	{proc.VmDontDump, unix.MADV_DONTDUMP},
	{proc.VmWipeOnFork, unix.MADV_WIPEONFORK},
}

// anonHugePath is what maps shows for anonymous memory of huge pages.
const anonHugePath = "/anon_hugepage (deleted)"

// kernelMappings are the mappings the kernel makes, which it may seal
// itself (CONFIG_MSEAL_SYSTEM_MAPPINGS).
var kernelMappings = map[string]bool{"[vdso]": true, "[vvar]": true, "[vvar_vclock]": true, "[vsyscall]": true, "[uprobes]": true}

func anonPage(e uint64) bool     { return proc.PresentOrSwapped(e) && !proc.PageFileOrSharedAnon(e) }
func presentPage(e uint64) bool  { return proc.PresentOrSwapped(e) }
func deletedPath(p string) bool  { return strings.HasSuffix(p, " (deleted)") }
func pseudoPath(p string) bool   { return strings.HasPrefix(p, "[") }
func protOf(perms string) uint32 { return protBits(perms[0] == 'r', perms[1] == 'w', perms[2] == 'x') }

func protBits(r, w, x bool) uint32 {
	var p uint32
	if r {
		p |= unix.PROT_READ
	}
	if w {
		p |= unix.PROT_WRITE
	}
	if x {
		p |= unix.PROT_EXEC
	}
	return p
}

// classifier turns smaps entries into the areas to dump, in order. The
// vDSO's special mappings become one [vdso] area and one vvar area; when
// the process was restored by a proxy (its [vdso] carries mark), the
// runtime pair is left out and the marked original addresses take their
// place, so the image shows the process's own vDSO.
type classifier struct {
	mark *vdso.Mark
	// pairEnd is the end of the runtime vvar and vDSO of a proxied
	// process, which begin at mark.RuntimeVVar.
	pairEnd uint64
	// vvar is the last vvar area, which the next entry may extend.
	vvar *pb.VmaEntry
}

// next classifies an entry: its VMA record, where its pages come from
// and the file it maps; a nil record for an entry that makes no VMA of
// its own.
func (c *classifier) next(s *proc.SmapsEntry) (e *pb.VmaEntry, a area, f mappedFile, err error) {
	mark := c.mark
	if s.ProtectionKey != 0 {
		return nil, a, f, fmt.Errorf("%w: protection key %d on the mapping at %#x-%#x (images have no place for it)", ErrUnsupported, s.ProtectionKey, s.Start, s.End)
	}
	e = &pb.VmaEntry{
		Start:  s.Start,
		End:    s.End,
		Pgoff:  s.Offset,
		Shmid:  0,
		Prot:   protOf(s.Perms),
		Fd:     -1,
		Status: image.VMAAreaRegular,
	}
	var madv uint64
	for _, m := range madvFlags {
		if s.Flags&m.flag != 0 {
			madv |= 1 << m.madv
		}
	}
	if madv != 0 {
		e.Madv = pb.Uint64(madv)
	}
	flags := uint32(unix.MAP_PRIVATE)
	if s.Perms[3] == 's' {
		flags = unix.MAP_SHARED
	}
	if s.Flags&proc.VmDroppable != 0 {
		flags = image.MapDroppable
	}
	if s.Flags&proc.VmGrowsDown != 0 {
		flags |= unix.MAP_GROWSDOWN
	}
	if s.Flags&proc.VmNoReserve != 0 {
		flags |= unix.MAP_NORESERVE
	}
	if s.Flags&proc.VmLocked != 0 {
		// Locked with mlock() or mapped with MAP_LOCKED: CRIU's
		// image says MAP_LOCKED for both.
		if s.Flags&proc.VmLockOnFault != 0 {
			return nil, a, f, fmt.Errorf("%w: memory locked on fault (mlock2 MLOCK_ONFAULT) at %#x-%#x", ErrUnsupported, s.Start, s.End)
		}
		flags |= unix.MAP_LOCKED
	}
	if s.Flags&proc.VmSealed != 0 && !kernelMappings[s.Path] {
		return nil, a, f, fmt.Errorf("%w: the mapping at %#x-%#x %s is sealed (mseal), which images have no place for", ErrUnsupported, s.Start, s.End, s.Path)
	}
	// Anonymous memory of huge pages (MAP_HUGETLB), which CRIU's images
	// mark in the flags, with the pages' size.
	var hugeFlags uint32
	if s.Flags&proc.VmHugeTLB != 0 && !isSysvShm(s.Mapping) {
		if s.Path != anonHugePath {
			return nil, a, f, fmt.Errorf("%w: a file of huge pages (hugetlbfs, MFD_HUGETLB) mapped at %#x-%#x %s", ErrUnsupported, s.Start, s.End, s.Path)
		}
		hugeFlags = unix.MAP_HUGETLB
		if sz := s.KernelPageSize; sz > pageSize {
			// MAP_HUGE_2MB and its kin: the size's log2 (the default
			// size's pages without it).
			hugeFlags |= uint32(bits.TrailingZeros64(sz)) << unix.MAP_HUGE_SHIFT
		}
	}
	a = area{start: s.Start, end: s.End, viaMem: s.Perms[0] != 'r', noFork: madv&noForkFlags != 0}
	mayWrite := s.Flags&proc.VmMayWrite != 0
	status := uint32(image.VMAAreaRegular)

	inRuntimePair := mark != nil && s.Start >= mark.RuntimeVVar && s.Start < c.pairEnd
	switch {
	case s.Path == "[vsyscall]" || inRuntimePair:
		return nil, a, f, nil
	case s.Path == "[vvar]" || s.Path == "[vvar_vclock]":
		if c.vvar != nil && c.vvar.End == s.Start {
			c.vvar.End = s.End
			return nil, a, f, nil
		}
		e.Status = status | image.VMAAreaVVAR
		e.Flags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS
		e.Pgoff = 0
		c.vvar = e
		return e, area{}, f, nil
	case s.Path == "[vdso]" || (mark != nil && s.Start == mark.VDSO):
		status |= image.VMAAreaVDSO
		flags |= unix.MAP_ANONYMOUS
		a.all, a.viaMem = true, true
	case mark != nil && s.Start == mark.VVar:
		// The old vvar range a proxy reserves.
		if c.vvar != nil {
			return nil, a, f, fmt.Errorf("proxy mark: vvar at %#x and %#x", c.vvar.Start, s.Start)
		}
		e.Status = status | image.VMAAreaVVAR
		e.Flags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS
		e.Prot = unix.PROT_READ
		c.vvar = e
		return e, area{}, f, nil
	case hugeFlags != 0 && flags&unix.MAP_TYPE == unix.MAP_PRIVATE:
		// A snapshot child would share its pages with the process,
		// whose writes may then take them from the child (the child
		// holds no reservation): it is read while the process is
		// frozen.
		status |= image.VMAAnonPrivate
		flags |= unix.MAP_ANONYMOUS | hugeFlags
		e.Pgoff = 0
		a.dump, a.noFork = presentPage, true
	case s.Path == "" || s.Path == "[heap]" || s.Path == "[stack]" || strings.HasPrefix(s.Path, "[anon:") || strings.HasPrefix(s.Path, "[stack:"):
		status |= image.VMAAnonPrivate
		flags |= unix.MAP_ANONYMOUS
		e.Pgoff = 0
		a.dump = presentPage
		if flags&unix.MAP_TYPE == image.MapDroppable {
			// The kernel may drop its pages at any moment, and a
			// process must expect zeros: they are not kept, as
			// CRIU does not keep them.
			a.dump = nil
		}
		switch s.Path {
		case "[heap]":
			status |= image.VMAAreaHeap
		case "[stack]":
			status |= image.VMAAreaStack
		}
	case (s.Path == "/dev/zero (deleted)" || hugeFlags != 0) && flags&unix.MAP_SHARED != 0:
		// Shared anonymous memory: a shmem object named after
		// /dev/zero (or of huge pages, a hugetlbfs one), identified by
		// its inode. It may be mapped more than once (an mprotect of
		// part of it splits it), each VMA at its offset in the object.
		status |= image.VMAAnonShared
		flags |= unix.MAP_ANONYMOUS | hugeFlags
		e.Shmid = s.Inode
		a.dump, a.shared = presentPage, true
		a.shmid, a.base = s.Inode, s.Start-s.Offset
	case s.Path == aioRingPath && flags&unix.MAP_TYPE == unix.MAP_SHARED:
		// The ring of an AIO context (aio.go), read whole while the
		// process is frozen: a fork does not copy it.
		e.Status, e.Flags = image.VMAAreaAIORing, flags
		a.all, a.viaMem, a.noFork = true, true, true
		return e, a, f, nil
	case s.Path == files.IOUringPath:
		// A ring of an io_uring (files/iouring.go), mapped again from
		// the ring made again; its memory is read through the
		// descriptor. The shmid is the ring's inode until listMemory
		// makes it the ring's entry.
		if flags&unix.MAP_TYPE != unix.MAP_SHARED {
			return nil, a, f, fmt.Errorf("%w: private mapping of an io_uring at %#x-%#x", ErrUnsupported, s.Start, s.End)
		}
		e.Status, e.Flags, e.Shmid = image.VMAAreaIOUring, flags, s.Inode
		return e, area{}, f, nil
	case pseudoPath(s.Path):
		return nil, a, f, fmt.Errorf("%w: mapping %s at %#x-%#x", ErrUnsupported, s.Path, s.Start, s.End)
	case strings.HasPrefix(s.Path, "/memfd:") && deletedPath(s.Path):
		// A memfd's contents are stored once per inode, read through a
		// descriptor; a private mapping adds its copied-on-write pages.
		f.memfd, _ = files.MemfdName(s.Path)
		status |= image.VMAAreaMemfd
		if flags&unix.MAP_SHARED != 0 {
			status |= image.VMAFileShared
		} else {
			status |= image.VMAFilePrivate
			a.dump = anonPage
		}
	case isSysvShm(s.Mapping):
		// An attachment of a System V shared memory segment, whose
		// inode is its id: the segment is dumped once for the tree
		// (sysvshm.go), and a read-only attachment (SHM_RDONLY) maps
		// a file open read-only, as fdflags says of file mappings.
		if s.Flags&proc.VmHugeTLB != 0 {
			return nil, a, f, fmt.Errorf("%w: System V shared memory %d of huge pages (SHM_HUGETLB) at %#x-%#x", ErrUnsupported, s.Inode, s.Start, s.End)
		}
		status |= image.VMAAnonShared | image.VMAAreaSysvIPC
		flags |= unix.MAP_ANONYMOUS
		e.Shmid = s.Inode
		e.Fdflags = pb.Uint32(unix.O_RDWR)
		if !mayWrite {
			e.Fdflags = pb.Uint32(unix.O_RDONLY)
		}
	case flags&unix.MAP_SHARED != 0:
		status |= image.VMAFileShared
		f.path = s.Path
	default:
		status |= image.VMAFilePrivate
		f.path = s.Path
		a.dump = anonPage
	}
	f.flags = unix.O_RDONLY
	if flags&unix.MAP_SHARED != 0 && mayWrite {
		f.flags = unix.O_RDWR
	}
	e.Status = status
	e.Flags = flags
	return e, a, f, nil
}

// readMark returns the proxy mark of the process's [vdso] at addr, nil if
// none.
func readMark(mem *os.File, addr uint64) (*vdso.Mark, error) {
	b := make([]byte, vdso.MarkSize)
	if _, err := mem.ReadAt(b, int64(addr)); err != nil {
		return nil, fmt.Errorf("read [vdso] at %#x: %w", addr, err)
	}
	m, err := vdso.ParseMark(b)
	if err == vdso.ErrNoMark {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read proxy mark at %#x: %w", addr, err)
	}
	return &m, nil
}
