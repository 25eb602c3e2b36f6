package dump

import (
	"fmt"
	"iter"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// area is one VMA to dump: its image entry and where its pages come from.
type area struct {
	e *pb.VmaEntry
	// dump says which present pages of the VMA to copy, nil for none.
	dump func(pagemapEntry uint64) bool
	// all copies every page of the VMA, present or not (the vDSO).
	all bool
	// viaMem reads through /proc/PID/mem, which can read pages that
	// process_vm_readv cannot (PROT_NONE, execute-only).
	viaMem bool
	// path is the backing file, "" for anonymous memory.
	path string
	// shared marks shared anonymous memory, whose contents are stored
	// once per object (shmid), at their offsets in the object.
	shared bool
	// memfd is the name of the memfd the VMA maps, "" if none.
	memfd string
	// mayWrite says the mapping may be made writable (smaps "mw"): a
	// shared file mapping then needs its file open for writing.
	mayWrite bool
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

// openFlags is the access mode of the file a mapping maps: for writing
// when a shared mapping may become writable, which the kernel allows only
// of a file open for writing, whatever the mapping's protection now.
func (a area) openFlags() uint32 {
	if a.e.Flags&unix.MAP_SHARED != 0 && a.mayWrite {
		return unix.O_RDWR
	}
	return unix.O_RDONLY
}

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

// allSmaps yields the entries of smaps' chunks in order.
func allSmaps(chunks [][]proc.SmapsEntry) iter.Seq[*proc.SmapsEntry] {
	return func(yield func(*proc.SmapsEntry) bool) {
		for _, c := range chunks {
			for i := range c {
				if !yield(&c[i]) {
					return
				}
			}
		}
	}
}

// classify turns the target's smaps into the areas to dump, letting each
// chunk of entries go once done with (the areas of 60,000 mappings would
// otherwise add to all their entries). The vDSO's special mappings become
// one [vdso] area and one vvar area; when the target was restored by a
// proxy (its [vdso] carries the mark), the runtime pair is left out and
// the marked original addresses take their place, so the image shows the
// process's own vDSO.
func classify(smaps [][]proc.SmapsEntry, mark *vdso.Mark) ([]area, error) {
	n := 0
	for _, c := range smaps {
		n += len(c)
	}
	areas := make([]area, 0, n)
	var vvar *pb.VmaEntry
	var pairEnd uint64
	if mark != nil {
		pairEnd = runtimeEnd(smaps, mark)
	}
	for i, c := range smaps {
		smaps[i] = nil
		var err error
		if areas, vvar, err = classifyChunk(areas, vvar, c, mark, pairEnd); err != nil {
			return nil, err
		}
	}
	return areas, nil
}

// classifyChunk appends the areas of a chunk of entries to areas; vvar is
// the vvar area so far, which the next may extend. The runtime vvar and
// vDSO of a proxied process end at pairEnd.
func classifyChunk(areas []area, vvar *pb.VmaEntry, smaps []proc.SmapsEntry, mark *vdso.Mark, pairEnd uint64) ([]area, *pb.VmaEntry, error) {
	for _, s := range smaps {
		if s.ProtectionKey != 0 {
			return nil, nil, fmt.Errorf("%w: protection key %d on the mapping at %#x-%#x (images have no place for it)", ErrUnsupported, s.ProtectionKey, s.Start, s.End)
		}
		e := &pb.VmaEntry{
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
				return nil, nil, fmt.Errorf("%w: memory locked on fault (mlock2 MLOCK_ONFAULT) at %#x-%#x", ErrUnsupported, s.Start, s.End)
			}
			flags |= unix.MAP_LOCKED
		}
		a := area{e: e, viaMem: s.Perms[0] != 'r', mayWrite: s.Flags&proc.VmMayWrite != 0}
		status := uint32(image.VMAAreaRegular)

		inRuntimePair := mark != nil && s.Start >= mark.RuntimeVVar && s.Start < pairEnd
		switch {
		case s.Path == "[vsyscall]":
			continue
		case inRuntimePair:
			continue
		case s.Path == "[vvar]" || s.Path == "[vvar_vclock]":
			if vvar != nil && vvar.End == s.Start {
				vvar.End = s.End
				continue
			}
			e.Status = status | image.VMAAreaVVAR
			e.Flags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS
			e.Pgoff = 0
			vvar = e
			areas = append(areas, area{e: e})
			continue
		case s.Path == "[vdso]" || (mark != nil && s.Start == mark.VDSO):
			status |= image.VMAAreaVDSO
			flags |= unix.MAP_ANONYMOUS
			a.all, a.viaMem = true, true
		case mark != nil && s.Start == mark.VVar:
			// The old vvar range a proxy reserves.
			if vvar != nil {
				return nil, nil, fmt.Errorf("proxy mark: vvar at %#x and %#x", vvar.Start, s.Start)
			}
			e.Status = status | image.VMAAreaVVAR
			e.Flags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS
			e.Prot = unix.PROT_READ
			vvar = e
			areas = append(areas, area{e: e})
			continue
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
		case s.Path == "/dev/zero (deleted)" && flags&unix.MAP_SHARED != 0:
			// Shared anonymous memory: a shmem object named after
			// /dev/zero, identified by its inode. It may be mapped
			// more than once (an mprotect of part of it splits it),
			// each VMA at its offset in the object.
			status |= image.VMAAnonShared
			flags |= unix.MAP_ANONYMOUS
			e.Shmid = s.Inode
			a.dump, a.shared = presentPage, true
		case pseudoPath(s.Path):
			return nil, nil, fmt.Errorf("%w: mapping %s at %#x-%#x", ErrUnsupported, s.Path, s.Start, s.End)
		case strings.HasPrefix(s.Path, "/memfd:") && deletedPath(s.Path):
			// A memfd's contents are stored once per inode, read through a
			// descriptor; a private mapping adds its copied-on-write pages.
			a.memfd, _ = files.MemfdName(s.Path)
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
				return nil, nil, fmt.Errorf("%w: System V shared memory %d of huge pages (SHM_HUGETLB) at %#x-%#x", ErrUnsupported, s.Inode, s.Start, s.End)
			}
			status |= image.VMAAnonShared | image.VMAAreaSysvIPC
			flags |= unix.MAP_ANONYMOUS
			e.Shmid = s.Inode
			e.Fdflags = pb.Uint32(unix.O_RDWR)
			if !a.mayWrite {
				e.Fdflags = pb.Uint32(unix.O_RDONLY)
			}
		case flags&unix.MAP_SHARED != 0:
			status |= image.VMAFileShared
			a.path = s.Path
		default:
			status |= image.VMAFilePrivate
			a.path = s.Path
			a.dump = anonPage
		}
		e.Status = status
		e.Flags = flags
		areas = append(areas, a)
	}
	return areas, vvar, nil
}

// runtimeEnd is the end of the runtime vvar/vdso block of a proxied
// process: the [vdso] that follows the runtime vvar.
func runtimeEnd(smaps [][]proc.SmapsEntry, mark *vdso.Mark) uint64 {
	for s := range allSmaps(smaps) {
		if s.Path == "[vdso]" && s.Start >= mark.RuntimeVVar {
			return s.End
		}
	}
	return mark.RuntimeVVar
}

// readMark returns the proxy mark of a process's [vdso], nil if none.
func readMark(mem *os.File, smaps [][]proc.SmapsEntry) (*vdso.Mark, error) {
	for s := range allSmaps(smaps) {
		if s.Path != "[vdso]" {
			continue
		}
		b := make([]byte, vdso.MarkSize)
		if _, err := mem.ReadAt(b, int64(s.Start)); err != nil {
			return nil, fmt.Errorf("read [vdso] at %#x: %w", s.Start, err)
		}
		m, err := vdso.ParseMark(b)
		if err != nil {
			if err == vdso.ErrNoMark {
				return nil, nil
			}
			return nil, fmt.Errorf("read proxy mark at %#x: %w", s.Start, err)
		}
		return &m, nil
	}
	return nil, nil
}
