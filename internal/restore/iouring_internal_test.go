package restore

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
)

// TestCheckIOUringVMAs checks that the mappings of io_urings are checked
// against the rings of the checkpoint before anything is built.
func TestCheckIOUringVMAs(t *testing.T) {
	d, err := image.Create(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	// Ring 1 at fd 5; file 2 an eventfd at fd 6; ring 3, no descriptor.
	ext := func(id uint32) *pb.FileEntry {
		return &pb.FileEntry{Type: pb.FdTypes_EXT, Id: id, Entry: &pb.ExtFileEntry{Id: id, Fown: &pb.FownEntry{}}}
	}
	fs := []*pb.FileEntry{ext(1), {Type: pb.FdTypes_EVENTFD, Id: 2, Entry: &pb.EventfdFileEntry{Id: 2, Flags: unix.O_RDWR, Fown: &pb.FownEntry{}}}, ext(3)}
	if err := image.WriteAll(d, image.Files, 0, fs); err != nil {
		t.Fatal(err)
	}
	fds := []*pb.FdinfoEntry{{Id: 1, Type: pb.FdTypes_EXT, Fd: 5}, {Id: 2, Type: pb.FdTypes_EVENTFD, Fd: 6}}
	if err := image.WriteAll(d, image.Fdinfo, 42, fds); err != nil {
		t.Fatal(err)
	}
	ring := func(id uint32) image.IOUring {
		return image.IOUring{ID: id, SqEntries: 2, CqEntries: 4, SqOff: [image.IOUringOffsets]uint32{0, 4, 16, 24, 36, 32, 128},
			CqOff: [image.IOUringOffsets]uint32{8, 12, 20, 28, 44, 64, 40}, Rings: make([]byte, 136), SQEs: make([]byte, 128)}
	}
	if err := d.WriteIOUrings([]image.IOUring{ring(1), ring(3)}); err != nil {
		t.Fatal(err)
	}
	set, err := files.Load(d, 42, 42)
	if err != nil {
		t.Fatal(err)
	}
	const at = 0x7f0000010000
	rings := vma{start: at, end: at + pageSize, prot: unix.PROT_READ | unix.PROT_WRITE, flags: unix.MAP_SHARED, status: image.VMAAreaIOUring, shmid: 1}
	sqes := rings
	sqes.start, sqes.end, sqes.pgoff = at+pageSize, at+2*pageSize, kernel.IORingOffSQEs
	with := func(v vma, edit func(*vma)) vma { edit(&v); return v }
	for _, tc := range []struct {
		name   string
		vmas   []vma
		saying string // "" for none
	}{
		{"a ring", []vma{rings, sqes}, ""},
		{"of no ring", []vma{with(rings, func(v *vma) { v.shmid = 2 })}, "io_uring VMA at 0x7f0000010000-0x7f0000011000 has status 0x100000, flags 0x1, file 2"},
		{"of a ring without a descriptor", []vma{with(rings, func(v *vma) { v.shmid = 3 })}, "holds no descriptor of"},
		{"private", []vma{with(rings, func(v *vma) { v.flags = unix.MAP_PRIVATE })}, "flags 0x2"},
		{"of another status too", []vma{with(rings, func(v *vma) { v.status |= image.VMAAreaRegular })}, "status 0x100001"},
		{"at another offset", []vma{with(rings, func(v *vma) { v.pgoff = pageSize })}, "offset 0x1000"},
		{"longer than its region", []vma{with(rings, func(v *vma) { v.end += pageSize })}, "longer than its region of 136 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &checkpoint{pid: 42, files: set}
			for _, v := range tc.vmas {
				c.vmas.add(&v)
			}
			err := c.checkIOUringVMAs()
			switch {
			case tc.saying == "" && err != nil:
				t.Fatalf("checkIOUringVMAs: %v", err)
			case tc.saying != "" && (!errors.Is(err, ErrImage) || !strings.Contains(err.Error(), tc.saying)):
				t.Fatalf("checkIOUringVMAs: %v, want %v saying %q", err, ErrImage, tc.saying)
			}
		})
	}
}
