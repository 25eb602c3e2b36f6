package proc

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestParseSysvShm(t *testing.T) {
	got, err := ParseSysvShm(readSeed(t, "sysvipc-shm.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := []SysvShm{
		{Key: 0x1234abcd, ID: 12345, Mode: 0o640, Size: 10000, Cpid: 2509, Lpid: 2509, Nattch: 3,
			Atime: 1796567413, Ctime: 1796567413, Rss: 4096},
		{Key: 0, ID: 12346, Mode: ShmDest | 0o640, Size: 10000, Cpid: 2509, Lpid: 2509, Nattch: 1, UID: 1000, GID: 100,
			Atime: 1796567413, Ctime: 1796567413, Rss: 4096},
		{Key: -1, ID: 0, Mode: ShmLocked | 0o600, Size: 4 << 20, Cpid: 7, Lpid: 8, Dtime: 1796567400, Ctime: 1796567400, Swap: 8192},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ParseSysvShm (-want +got):\n%s", d)
	}
	for _, in := range []string{
		"",
		"nonsense\n",
		"       key      shmid perms size\n",
		"       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n 1 2 640 10\n",
		"       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n 1 2 9 10 1 1 1 0 0 0 0 0 0 0 0 0\n",
		"       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n 1 -2 640 10 1 1 1 0 0 0 0 0 0 0 0 0\n",
		"       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n 1 2 640 10 1 1 1 0 0 0 0 0 0 0 0 0",
	} {
		if _, err := ParseSysvShm([]byte(in)); !checkFuzzErr(t, err) {
			t.Errorf("ParseSysvShm(%q) succeeded", in)
		}
	}
}

// TestReadSysvShm makes a segment and finds it in /proc/sysvipc/shm.
func TestReadSysvShm(t *testing.T) {
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, 5000, unix.IPC_CREAT|0o604)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.SysvShmCtl(id, unix.IPC_RMID, nil) })
	segs, err := ReadSysvShm()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		if s.ID == int32(id) {
			if s.Size != 5000 || s.Mode != 0o604 || s.Key != 0 || s.Nattch != 0 || int(s.UID) != unix.Geteuid() {
				t.Errorf("segment %d: %+v", id, s)
			}
			return
		}
	}
	t.Errorf("segment %d not in %+v", id, segs)
}

func FuzzParseSysvShm(f *testing.F) {
	f.Add(readSeed(f, "sysvipc-shm.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseSysvShm(b)
		checkFuzzErr(t, err)
	})
}
