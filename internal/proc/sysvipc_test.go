package proc

import (
	"os"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
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

func TestParseSysvSem(t *testing.T) {
	got, err := ParseSysvSem(readSeed(t, "sysvipc-sem.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := []SysvSem{
		{Key: 0x1234abcd, ID: 2, Mode: 0o640, Nsems: 5, Ctime: 1796575684},
		{Key: 0, ID: 3, Mode: 0o600, Nsems: 1, Ctime: 1796575684},
		{Key: -1, ID: 32770, Mode: 0o604, Nsems: 250, UID: 1000, GID: 100, Otime: 1796575690, Ctime: 1796575600},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ParseSysvSem (-want +got):\n%s", d)
	}
	const header = "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n"
	for _, in := range []string{
		"",
		"       key      shmid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n",
		header + " 1 2 640 5 0 0 0 0 0\n",
		header + " 1 2 1640 5 0 0 0 0 0 0\n",
		header + " 1 -2 640 5 0 0 0 0 0 0\n",
		header + " 1 2 640 x 0 0 0 0 0 0\n",
		header + " 1 2 640 5 0 0 0 0 0 0",
	} {
		if _, err := ParseSysvSem([]byte(in)); !checkFuzzErr(t, err) {
			t.Errorf("ParseSysvSem(%q) succeeded", in)
		}
	}
}

func TestParseSysvMsg(t *testing.T) {
	got, err := ParseSysvMsg(readSeed(t, "sysvipc-msg.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := []SysvMsg{
		{Key: 17185, ID: 2, Mode: 0o666, Cbytes: 70, Qnum: 2, Lspid: 8232, Stime: 1796575684, Ctime: 1796575684},
		{Key: 0, ID: 3, Mode: 0o600, Ctime: 1796575684},
		{Key: 99, ID: 65538, Mode: 0o600, Cbytes: 16384, Qnum: 3, Lspid: 4000, Lrpid: 4001, UID: 1000, GID: 100,
			Stime: 1796575690, Rtime: 1796575691, Ctime: 1796575600},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ParseSysvMsg (-want +got):\n%s", d)
	}
	const header = "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime\n"
	for _, in := range []string{
		"",
		"nonsense\n",
		header + " 1 2 640 0 0 0 0 0 0 0 0 0 0\n",
		header + " 1 2 640 0 0 -5 0 0 0 0 0 0 0 0\n",
		header + " 1 2 2640 0 0 0 0 0 0 0 0 0 0 0\n",
		header + " 1 2 640 0 0 0 0 0 0 0 0 0 0 0",
	} {
		if _, err := ParseSysvMsg([]byte(in)); !checkFuzzErr(t, err) {
			t.Errorf("ParseSysvMsg(%q) succeeded", in)
		}
	}
}

// TestReadSysvSemMsg makes a semaphore set and a message queue, sends a
// message, and finds them in /proc/sysvipc/sem and msg.
func TestReadSysvSemMsg(t *testing.T) {
	sem, err := kernel.SemGet(unix.IPC_PRIVATE, 3, unix.IPC_CREAT|0o640)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kernel.SemRemove(sem) })
	msq, err := kernel.MsgGet(unix.IPC_PRIVATE, unix.IPC_CREAT|0o604)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kernel.MsgRemove(msq) })
	if err := kernel.MsgSend(msq, 5, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	sets, err := ReadSysvSem()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(sets, func(s SysvSem) bool { return s.ID == int32(sem) })
	if i < 0 || sets[i].Nsems != 3 || sets[i].Mode != 0o640 || int(sets[i].UID) != unix.Geteuid() {
		t.Errorf("semaphore set %d in %+v", sem, sets)
	}
	queues, err := ReadSysvMsg()
	if err != nil {
		t.Fatal(err)
	}
	i = slices.IndexFunc(queues, func(m SysvMsg) bool { return m.ID == int32(msq) })
	if i < 0 || queues[i].Qnum != 1 || queues[i].Cbytes != 5 || queues[i].Mode != 0o604 || int(queues[i].Lspid) != os.Getpid() {
		t.Errorf("message queue %d in %+v", msq, queues)
	}
}

func FuzzParseSysvSem(f *testing.F) {
	f.Add(readSeed(f, "sysvipc-sem.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseSysvSem(b)
		checkFuzzErr(t, err)
	})
}

func FuzzParseSysvMsg(f *testing.F) {
	f.Add(readSeed(f, "sysvipc-msg.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseSysvMsg(b)
		checkFuzzErr(t, err)
	})
}
