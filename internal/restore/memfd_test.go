package restore_test

import (
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestMemfd checkpoints test/subjects/memfd.c and restores it with the
// default options: its checks (contents, copied-on-write private pages,
// the descriptor's position, the seals) go on passing, and its maps show
// the memfds again.
func TestMemfd(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "memfd.c"))}
	before := memfdAreas(liveAreas(t, s.Pid))
	c := dumpAndReap(t, s)
	n := 0
	for _, v := range c.im.mm.Vmas {
		if v.GetStatus()&image.VMAAreaMemfd != 0 {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("the images hold %d memfd VMAs, want 2", n)
	}

	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 20)
	after := memfdAreas(liveAreas(t, s.Pid))
	if len(after) != 2 || strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("restored memfd mappings:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
}

func memfdAreas(as []area) []string {
	var out []string
	for _, a := range as {
		if strings.HasPrefix(a.Name, "/memfd:") {
			out = append(out, a.String())
		}
	}
	return out
}
