package dump_test

import (
	"errors"
	"io"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpMemfd dumps test/subjects/memfd.c: one memfd.img entry per
// memfd inode, each inode's contents once in its shmem pages, its
// mappings and descriptors referring to MEMFD file entries, and the
// copied-on-write pages of the private mapping with the process's pages.
func TestDumpMemfd(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "memfd.c"))
	fd, sfd, zfd := uint32(s.ReadyUint(t, "fd")), uint32(s.ReadyUint(t, "sfd")), uint32(s.ReadyUint(t, "zfd"))
	sh, pv := s.ReadyUint(t, "sh"), s.ReadyUint(t, "pv")
	// Its first tick has read the untouched quarter, which shmem then
	// backs with pages.
	s.WaitTicks(t, 1)
	d := dumpProcess(t, s.Pid, false)
	im := readImages(t, d.dir, s.Pid)
	critDecode(t, d.dir)

	inodes, err := image.ReadAll[pb.MemfdInodeEntry](im.dir, image.Memfd, 0)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[uint64]*pb.MemfdInodeEntry{}
	for _, e := range inodes {
		byID[e.GetInodeId()] = e
	}
	if len(inodes) != 4 || len(byID) != 4 {
		t.Fatalf("memfd.img holds %d entries (%d ids), want 4", len(inodes), len(byID))
	}
	inodeOf := func(f *pb.FileEntry) *pb.MemfdInodeEntry {
		t.Helper()
		if f.GetType() != pb.FdTypes_MEMFD || f.GetMemfd() == nil {
			t.Fatalf("file %d is %v, want MEMFD", f.GetId(), f.GetType())
		}
		e := byID[uint64(f.GetMemfd().GetInodeId())]
		if e == nil {
			t.Fatalf("file %d refers to memfd inode %d, which memfd.img lacks", f.GetId(), f.GetMemfd().GetInodeId())
		}
		return e
	}

	pat := inodeOf(im.file(t, fd))
	if f := im.file(t, fd).GetMemfd(); f.GetPos() != 12345 || f.GetFlags()&unix.O_ACCMODE != unix.O_RDWR {
		t.Errorf("fd %d: pos %d flags %#o, want 12345 and O_RDWR", fd, f.GetPos(), f.GetFlags())
	}
	if im.fds[fd].GetFlags()&unix.FD_CLOEXEC == 0 {
		t.Errorf("fd %d lost FD_CLOEXEC", fd)
	}
	if pat.GetName() != "cryo-pattern" || pat.GetSize() != 1<<20 || pat.GetSeals() != unix.F_SEAL_SEAL {
		t.Errorf("pattern memfd: name %q size %d seals %#x, want cryo-pattern, 1 MiB, F_SEAL_SEAL", pat.GetName(), pat.GetSize(), pat.GetSeals())
	}
	// Shared anonymous memory held by a descriptor, kept as a memfd of
	// the name a restore makes it again by.
	if z, f := inodeOf(im.file(t, zfd)), im.file(t, zfd).GetMemfd(); z.GetName() != "/dev/zero" || f.GetPos() != 3 || f.GetFlags()&unix.O_APPEND == 0 {
		t.Errorf("shared anonymous memory descriptor: name %q pos %d flags %#o, want /dev/zero, 3 and O_APPEND", z.GetName(), f.GetPos(), f.GetFlags())
	}
	sealed := inodeOf(im.file(t, sfd))
	if sealed.GetName() != "cryo-sealed" || sealed.GetSize() != 64<<10 || sealed.GetSeals() != unix.F_SEAL_GROW|unix.F_SEAL_SHRINK {
		t.Errorf("sealed memfd: name %q size %d seals %#x", sealed.GetName(), sealed.GetSize(), sealed.GetSeals())
	}

	for _, c := range []struct {
		addr   uint64
		status uint32
	}{{sh, image.VMAFileShared}, {pv, image.VMAFilePrivate}} {
		v := im.vma(t, c.addr)
		if v.GetStatus()&(image.VMAAreaMemfd|c.status) != image.VMAAreaMemfd|c.status {
			t.Errorf("VMA at %#x: status %#x, want VMA_AREA_MEMFD and %#x", c.addr, v.GetStatus(), c.status)
		}
		f, ok := im.files[uint32(v.GetShmid())]
		if !ok {
			t.Fatalf("VMA at %#x refers to file %d, which files.img lacks", c.addr, v.GetShmid())
		}
		if inodeOf(f) != pat {
			t.Errorf("VMA at %#x maps memfd %q, want cryo-pattern", c.addr, inodeOf(f).GetName())
		}
	}
	// The private mapping's own pages: the copied ones only.
	if n := im.pagesIn(pv, pv+(1<<19)); n != 4 {
		t.Errorf("private memfd mapping has %d pages in pages-1.img, want its 4 copies", n)
	}
	if n := im.pagesIn(sh, sh+(1<<20)); n != 0 {
		t.Errorf("shared memfd mapping has %d pages in pages-1.img, want none", n)
	}

	// Contents once, at object offsets: all of the pattern memfd (shmem
	// backs even a read of a hole, and the checks read the untouched
	// quarter) and the sealed memfd's one written page.
	objectPages := func(e *pb.MemfdInodeEntry) (uint64, *image.PageReader, []image.PageEntry) {
		pr, err := im.dir.OpenShmemPages(uint64(e.GetShmid()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pr.Close() })
		var n uint64
		var es []image.PageEntry
		for {
			pe, err := pr.Next()
			if errors.Is(err, io.EOF) {
				return n, pr, es
			}
			if err != nil {
				t.Fatal(err)
			}
			n += pe.NrPages
			es = append(es, pe)
		}
	}
	if n, pr, es := objectPages(pat); n != 256 {
		t.Errorf("pattern memfd holds %d pages, want 256", n)
	} else {
		b := make([]byte, 8)
		if _, err := pr.Data(es[0]).ReadAt(b, 4*1000); err != nil {
			t.Fatal(err)
		}
		if want := uint32(uint64(1000) * 2654435761 % (1 << 32)); uint32(b[0])|uint32(b[1])<<8|uint32(b[2])<<16|uint32(b[3])<<24 != want {
			t.Errorf("pattern memfd word 1000 is %x, want %#x", b[:4], want)
		}
	}
	if n, pr, es := objectPages(sealed); n != 1 || es[0].Vaddr != 4096 {
		t.Errorf("sealed memfd holds %d pages (%v), want the one at 4096", n, es)
	} else {
		b := make([]byte, 7)
		if _, err := pr.Data(es[0]).ReadAt(b, 0); err != nil || string(b) != "sealed!" {
			t.Errorf("sealed memfd page holds %q (%v), want sealed!", b, err)
		}
	}
}

// TestDumpRefusesMappedShmemFd dumps test/subjects/memfd.c holding a
// descriptor of shared anonymous memory that it also maps: refused, as a
// restore would make two objects of it, and the subject goes on.
func TestDumpRefusesMappedShmemFd(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "memfd.c"), "mapped")
	s.WaitTicks(t, 1)
	expectRefused(t, s, dump.Options{}, "held by a descriptor too")
}
