package restore_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/cpu"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestoreFromEmulatedCPU restores a checkpoint made to look as if it
// came from a CPU like qemu's -cpu max: protection keys and MPX enabled,
// their state saved by every thread but unused. It needs no
// --allow-missing-cpu-features; with a bounds register set, it is refused,
// naming it.
func TestRestoreFromEmulatedCPU(t *testing.T) {
	testutil.RequireRoot(t)
	const mpxPKRU = 1<<3 | 1<<4 | 1<<9
	host := cpu.ReadHost()
	if host.XCR0&mpxPKRU != 0 {
		t.Skip("this CPU has MPX or PKRU: nothing to take away")
	}
	s := startSink(t)
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)
	emulated := func(t *testing.T, bound uint64) string {
		t.Helper()
		dir := copyDir(t, c.dir)
		info := host.Image()
		x := info.X86Entry[0]
		x.Capability[11] |= 1<<3 | 1<<4 // PKU, OSPKE
		x.Capability[9] |= 1 << 14      // MPX
		x.Capability[4] |= 1 << 31      // hypervisor
		x.XfeaturesMask = pb.Uint64(host.XCR0 | mpxPKRU)
		rewriteImage(t, dir, image.Cpuinfo, 0, info)
		for tid, core := range c.im.cores {
			core = pb.Clone(core)
			xs := core.GetThreadInfo().GetFpregs().GetXsave()
			if xs == nil {
				t.Fatalf("tid %d: no XSAVE state in the image", tid)
			}
			xs.XstateBv = xs.GetXstateBv() | mpxPKRU
			xs.BndregState, xs.BndcsrState = make([]uint64, 8), make([]uint64, 8)
			xs.BndregState[1] = bound
			xs.Pkru = []uint32{0x55555554, 0}
			rewriteImage(t, dir, image.Core, tid, core)
		}
		return dir
	}

	before := testutil.Children(t)
	log, buf := newLog()
	_, err := restore.Restore(context.Background(), restore.Options{Dir: emulated(t, 0x7000), Log: log})
	if err == nil {
		s.Restored()
		t.Fatal("restore with MPX bounds in use succeeded on a CPU without MPX")
	}
	if !errors.Is(err, cpu.ErrMissingFeatures) || !strings.Contains(err.Error(), "mpx-bndregs (register state in use)") {
		t.Errorf("error %q, want ErrMissingFeatures naming mpx-bndregs\nlog:\n%s", err, buf)
	}
	checkNothingLeft(t, before, s.Pid)

	cc := *c
	cc.dir = emulated(t, 0)
	restoreSubject(t, s, &cc, restore.Options{})
	s.WaitTicks(t, 2*checkEvery+5)
}
