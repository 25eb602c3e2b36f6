package files

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestVerifyMarks checks what a restore lets a process mark again, as
// the process: a file it may read, or the very inode it marked (same
// handle) though it may not read it now; not another file at the path, a
// path through a symbolic link, a file it may not read whose handle is
// not the one marked, a fanotify without CAP_SYS_ADMIN, a mount mark on
// what is no mount point now.
func TestVerifyMarks(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	public, rootOnly, other := file("public", 0o644), file("root-only", 0o600), file("other", 0o644)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(public, link); err != nil {
		t.Fatal(err)
	}
	// watch is a watch entry of the file at path as the dump makes it,
	// then named at name.
	watch := func(path, name string) *pb.InotifyWdEntry {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, path, 0)
		if err != nil {
			t.Fatal(err)
		}
		sdev := kernel.KernelDev(unix.Major(st.Dev), unix.Minor(st.Dev))
		e, err := (&Table{}).markEntry("test", sdev, st.Ino, &proc.FileHandle{Type: h.Type(), Bytes: h.Bytes()})
		if err != nil {
			t.Fatal(err)
		}
		if e.GetPath() != path {
			t.Errorf("the dump found %s at %q", path, e.GetPath())
		}
		e.Path = pb.String(name)
		return &pb.InotifyWdEntry{Wd: 1, SDev: sdev, IIno: st.Ino, FHandle: e}
	}
	nobody := kernel.FsCreds{Fsuid: 65534, Fsgid: 65534}
	admin := nobody
	admin.Effective = 1 << unix.CAP_SYS_ADMIN
	otherHandle := watch(rootOnly, rootOnly)
	otherHandle.FHandle.Handle[0] ^= 1
	for _, tc := range []struct {
		name  string
		f     *pb.FileEntry
		creds kernel.FsCreds
		err   error
		says  string
	}{
		{"a file it may read", inotifyEntry(watch(public, public)), nobody, nil, ""},
		{"root's, the inode it marked", inotifyEntry(watch(rootOnly, rootOnly)), nobody, nil, ""},
		{"root's, another handle", inotifyEntry(otherHandle), nobody, ErrAccess, "file handle is not the one marked"},
		{"another file at the path", inotifyEntry(watch(public, other)), nobody, ErrChanged, "--allow-changed " + other},
		{"a symbolic link", inotifyEntry(watch(public, link)), nobody, ErrChanged, "symbolic link"},
		{"fanotify without CAP_SYS_ADMIN", fanotifyMountEntry(dir), nobody, ErrAccess, "CAP_SYS_ADMIN"},
		{"a mount mark on no mount point", fanotifyMountEntry(dir), admin, ErrChanged, "not a mount point"},
		{"a mount mark on /", fanotifyMountEntry("/"), admin, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Set{Files: []*pb.FileEntry{tc.f}, Fds: []pb.FdinfoEntry{
				{Id: 1, Fd: 3, Type: tc.f.Type},
			}}
			err := s.Verify(nil, VerifyOptions{Creds: tc.creds, Log: nil})
			defer s.Close()
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) || err != nil && !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v, want %v saying %q", err, tc.err, tc.says)
			}
			if err == nil && len(s.markFds) != 1 {
				t.Errorf("%d marks opened, want 1", len(s.markFds))
			}
		})
	}
}

func inotifyEntry(w *pb.InotifyWdEntry) *pb.FileEntry {
	return &pb.FileEntry{Type: pb.FdTypes_INOTIFY, Id: 1, Entry: &pb.InotifyFileEntry{
		Id: 1, Flags: 0, Fown: &pb.FownEntry{}, Wd: []*pb.InotifyWdEntry{w},
	}}
}

func fanotifyMountEntry(point string) *pb.FileEntry {
	return &pb.FileEntry{Type: pb.FdTypes_FANOTIFY, Id: 1, Entry: &pb.FanotifyFileEntry{
		Id: 1, Flags: 0, Fown: &pb.FownEntry{}, Faflags: 0, Evflags: 0,
		Mark: []*pb.FanotifyMarkEntry{{
			Id: 1, Type: pb.MarkType_MOUNT, Mflags: 0, Mask: unix.FAN_MODIFY,
			IgnoredMask: 0, SDev: 0,
			Me: &pb.FanotifyMountMarkEntry{MntId: 1, Path: pb.String(point[1:])},
		}},
	}}
}
