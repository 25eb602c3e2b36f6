package dump_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpPipes dumps test/subjects/pipes.c and checks, as crit reads the
// images, what a restore needs of its pipes and FIFOs: the size of each
// pipe, and the unlinked FIFOs as CRIU records them, a ghost file of the
// FIFO's mode per FIFO that every path entry of the FIFO is remapped to.
func TestDumpPipes(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := testutil.StartSubject(t, testutil.BuildC(t, "pipes.c"), dir)
	d := dumpProcess(t, s.Pid, true)
	s.WaitTicks(t, 3)
	critDecode(t, d.dir)
	im := readImages(t, d.dir, s.Pid)
	fd := func(k string) uint32 { return uint32(s.ReadyUint(t, k)) }

	// Sizes, by the pipe id of a descriptor.
	sizes := map[uint32]uint32{}
	for _, k := range []image.Kind{image.PipesData, image.FifoData} {
		es, err := image.ReadAll[pb.PipeDataEntry](im.dir, k, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			sizes[e.GetPipeId()] = e.GetSize()
		}
	}
	for _, tc := range []struct {
		fd   string
		size uint32
	}{{"pr", 64 << 10}, {"big_r", 1 << 20}, {"small_r", 256 << 10}, {"fifo", 128 << 10}, {"ghost_r", 64 << 10}} {
		f := im.file(t, fd(tc.fd))
		id := f.GetPipe().GetPipeId()
		if f.GetType() == pb.FdTypes_FIFO {
			id = f.GetFifo().GetPipeId()
		}
		if got := sizes[id]; got != tc.size {
			t.Errorf("%s (fd %d): pipe %d of size %d, want %d", tc.fd, fd(tc.fd), id, got, tc.size)
		}
	}

	// The unlinked FIFOs, as crit decodes them.
	ghostOf := map[uint32]uint32{} // REG entry id -> ghost id
	for _, r := range im.remaps {
		ghostOf[r.GetOrigId()] = r.GetRemapId()
	}
	ghost := func(k string) uint32 {
		f := im.file(t, fd(k))
		g, ok := ghostOf[f.GetFifo().GetRegfId()]
		if f.GetType() != pb.FdTypes_FIFO || !ok {
			t.Fatalf("%s (fd %d): %v entry whose path is not remapped to a ghost file", k, fd(k), f.GetType())
		}
		return g
	}
	if ghost("ghost_r") != ghost("ghost_w") || ghost("ghost_r") == ghost("wronly") {
		t.Errorf("ghost files: ghost_r %d, ghost_w %d, wronly %d: want one per FIFO", ghost("ghost_r"), ghost("ghost_w"), ghost("wronly"))
	}
	for _, tc := range []struct {
		fd   string
		mode uint32
	}{{"ghost_r", unix.S_IFIFO | 0o640}, {"wronly", unix.S_IFIFO | 0o600}} {
		name := filepath.Join(d.dir, image.GhostFile.FileName(ghost(tc.fd)))
		out, err := exec.Command("crit", "decode", "-i", name).Output()
		if err != nil {
			t.Fatalf("crit decode %s: %v", name, err)
		}
		var img struct{ Entries []struct{ Mode uint32 } }
		if err := json.Unmarshal(out, &img); err != nil || len(img.Entries) != 1 {
			t.Fatalf("crit's %s: %v\n%s", name, err, out)
		}
		if img.Entries[0].Mode != tc.mode {
			t.Errorf("%s (fd %d): ghost file of mode %#o, want %#o", tc.fd, fd(tc.fd), img.Entries[0].Mode, tc.mode)
		}
	}
}

// TestDumpRefusesPackets checks that a pipe holding packets of a
// packet-mode (O_DIRECT) writer is refused by name, the process left as it
// was: the images keep a pipe's bytes, not where its packets end.
func TestDumpRefusesPackets(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := testutil.StartSubject(t, testutil.BuildC(t, "pipes.c"), dir, "packets")
	// The first descriptor of the pipe the dump meets names it.
	expectRefused(t, s, dump.Options{LeaveRunning: true}, "fd "+s.Ready["pkt_r"], "packets")
}

// TestDumpRefusesOwnerOutside checks that a pipe whose signals
// (F_SETOWN) go to a process outside the checkpoint, the subject's parent
// here, is refused by name, the process left as it was: a restore would
// signal whatever process has that pid then.
func TestDumpRefusesOwnerOutside(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := testutil.StartSubject(t, testutil.BuildC(t, "pipes.c"), dir, "async-outside")
	expectRefused(t, s, dump.Options{LeaveRunning: true}, "fd "+s.Ready["pr"], fmt.Sprintf("process %d, not one of the checkpoint's", os.Getpid()))
}
