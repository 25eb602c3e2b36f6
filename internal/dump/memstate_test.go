package dump_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpRefusesMemory checks that memory locks, seals and huge pages,
// which CRIU's images cannot describe, are refused, naming them, and leave
// the target running.
func TestDumpRefusesMemory(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tt := range []struct {
		mode string
		want []string // substrings of the error; a key of the ready line stands for its address
	}{
		{"lockall", []string{"mlockall(MCL_FUTURE)"}},
		{"lockonfault", []string{"MLOCK_ONFAULT", "onfault"}},
		{"seal", []string{"sealed (mseal)", "sealed"}},
		{"hugememfd", []string{"a file of huge pages", "huge"}},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			if tt.mode == "hugememfd" {
				testutil.ReserveHugePages(t, 1)
			}
			s := startSinkBinary(t, testutil.BuildC(t, "memstate.c"), tt.mode)
			maps := readMaps(t, s.Pid)
			dir := filepath.Join(t.TempDir(), "images")
			_, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: dir, LeaveRunning: true})
			if !errors.Is(err, dump.ErrUnsupported) {
				t.Fatalf("dump: %v, want %v", err, dump.ErrUnsupported)
			}
			for _, w := range tt.want {
				if v, ok := s.Ready[w]; ok {
					w = v[2:] // the address, without 0x
				}
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			// Left as it was: untraced, mapped the same, no images, and
			// still ticking.
			st, err := proc.ReadStatus(s.Pid)
			if err != nil {
				t.Fatal(err)
			}
			if st.TracerPid != 0 {
				t.Errorf("still traced by %d", st.TracerPid)
			}
			if d := cmp.Diff(maps, readMaps(t, s.Pid)); d != "" {
				t.Errorf("mappings changed (-before +after):\n%s", d)
			}
			if imgs, _ := filepath.Glob(filepath.Join(dir, "*.img")); len(imgs) > 0 {
				t.Errorf("images left behind: %v", imgs)
			}
			s.WaitTicks(t, 3)
		})
	}
}

// TestDumpMemoryStateCrit dumps a subject holding every kind of memory and
// process state the memstate subject makes that a dump keeps (guard
// regions, locked and split shared memory...) and has crit decode the
// images.
func TestDumpMemoryStateCrit(t *testing.T) {
	testutil.RequireRoot(t)
	s := startSinkBinary(t, testutil.BuildC(t, "memstate.c"), "lock", "guard", "shmsplit", "fileprot", "oom", "membarrier")
	dir := filepath.Join(t.TempDir(), "images")
	if _, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: dir, LeaveRunning: true}); err != nil {
		t.Fatal(err)
	}
	critDecode(t, dir)
	s.WaitTicks(t, 3)
}
