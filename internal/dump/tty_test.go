package dump_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpPty dumps test/subjects/pty.c, leaving it running, and checks
// the images as crit reads them: one tty-info entry per end of each
// pseudo-terminal with its settings, window size, session and index, one
// for /dev/tty, and the data queued in each direction. The subject's own
// checks, tick after tick, find every queued byte still there: the dump
// read it and put it back.
func TestDumpPty(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "pty.c"))
	d := dumpProcess(t, s.Pid, true)
	s.WaitTicks(t, 5)
	critDecode(t, d.dir)
	im := readImages(t, d.dir, s.Pid)
	infos, err := image.ReadAll[pb.TtyInfoEntry](im.dir, image.TTYInfo, 0)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[uint32]*pb.TtyInfoEntry{}
	for _, e := range infos {
		byID[e.GetId()] = e
	}
	info := func(k string) *pb.TtyInfoEntry {
		t.Helper()
		f := im.file(t, uint32(s.ReadyUint(t, k)))
		if f.GetType() != pb.FdTypes_TTY || byID[f.GetTty().GetTtyInfoId()] == nil {
			t.Fatalf("%s: %v entry without its tty-info", k, f.GetType())
		}
		reg := im.files[f.GetTty().GetRegfId()].GetReg()
		if reg == nil {
			t.Fatalf("%s: no path entry", k)
		}
		if link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", s.Pid, s.ReadyUint(t, k))); reg.GetName() != link {
			t.Errorf("%s: path %s, want %s", k, reg.GetName(), link)
		}
		return byID[f.GetTty().GetTtyInfoId()]
	}
	type end struct {
		Type          pb.TtyType
		Master        bool
		Sid           uint32
		Rows, Cols    uint32
		Canonical     bool
		Index, Other  uint32
		DataForReader string
	}
	data := map[uint32]string{}
	datas, err := image.ReadAll[pb.TtyDataEntry](im.dir, image.TTYData, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range datas {
		data[e.GetTtyId()] += string(e.GetData())
	}
	describe := func(k string) end {
		e := info(k)
		return end{Type: e.GetType(), Master: unix.Major(uint64(e.GetRdev())) == 5 && unix.Minor(uint64(e.GetRdev())) == 2,
			Sid: e.GetSid(), Rows: e.GetWinsize().GetWsRow(), Cols: e.GetWinsize().GetWsCol(),
			Canonical: e.GetTermios().GetCLflag()&unix.ICANON != 0, DataForReader: data[e.GetId()]}
	}
	sid := uint32(s.Pid)
	want := map[string]end{
		"cm":  {Type: pb.TtyType_PTY, Master: true, Sid: sid, Rows: 33, Cols: 101, Canonical: true, DataForReader: "line one\r\nline two\r\npartial"},
		"cs":  {Type: pb.TtyType_PTY, Sid: sid, Rows: 33, Cols: 101, Canonical: true, DataForReader: "line one\nline two\npartial"},
		"tty": {Type: pb.TtyType_CTTY, Sid: sid},
		"rm":  {Type: pb.TtyType_PTY, Master: true, Rows: 24, Cols: 80, DataForReader: "raw\nout\x04"},
		"rs":  {Type: pb.TtyType_PTY, Rows: 24, Cols: 80, DataForReader: "raw\r\x7f\x03\x15in\n"},
	}
	got := map[string]end{}
	for k := range want {
		got[k] = describe(k)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("terminals in the images (-want +got):\n%s", diff)
	}
	for _, pair := range [][2]string{{"cm", "cs"}, {"rm", "rs"}} {
		m, sl := info(pair[0]), info(pair[1])
		if m.GetPty().GetIndex() != sl.GetPty().GetIndex() || m.GetId() == sl.GetId() {
			t.Errorf("%s and %s: tty-info %d (index %d) and %d (index %d), want two entries of one index", pair[0], pair[1],
				m.GetId(), m.GetPty().GetIndex(), sl.GetId(), sl.GetPty().GetIndex())
		}
	}
}

// TestDumpRefusesOutsideTerminal checks that a terminal whose other end
// is outside the checkpoint is refused by name, the process left as it
// was: a slave whose master another process holds (an ssh session's,
// say) without --shell-job, held by a descriptor or only as the
// controlling terminal of the session the process leads; and a master
// whose slave the process does not hold, even with --shell-job.
func TestDumpRefusesOutsideTerminal(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "vdsoclock.c")
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave := fmt.Sprintf("/dev/pts/%d", n)
	for _, tc := range []struct {
		name     string
		script   string
		open     string
		shellJob bool
		want     []string
	}{
		{"slave", `exec "$0" <>"$1"`, slave, false, []string{"fd 0", slave, "outside the checkpoint", "--shell-job"}},
		{"controlling terminal", `exec 3<>"$1"; exec "$0" 3<&-`, slave, false,
			[]string{"leads its session", fmt.Sprintf("device 136:%d", n), "outside the checkpoint", "--shell-job"}},
		{"master", `exec "$0" <>"$1"`, "/dev/ptmx", true, []string{"fd 0", "master of pseudo-terminal", "outside the checkpoint"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testutil.StartSubject(t, "/bin/sh", "-c", tc.script, bin, tc.open)
			s.WaitTicks(t, 2)
			expectRefused(t, s, dump.Options{ShellJob: tc.shellJob}, tc.want...)
		})
	}
}
