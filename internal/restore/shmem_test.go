package restore_test

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestSharedAnonymousMemory checkpoints shared anonymous mappings, a
// touched one, a read-only one and one ending in a guard page (two VMAs
// of one object): the dump stores each object's touched pages once, and
// the restored process finds its patterns and its untouched pages still
// zero, and its mappings as they were.
func TestSharedAnonymousMemory(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "shmem.c"))}
	c := dumpAndReap(t, s)

	var pages []uint64
	seen := map[uint64]bool{}
	for _, v := range c.im.mm.Vmas {
		if v.GetStatus()&image.VMAAnonShared == 0 || seen[v.GetShmid()] {
			continue
		}
		seen[v.GetShmid()] = true
		pr, err := c.im.dir.OpenShmemPages(v.GetShmid())
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for {
			e, err := pr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n += e.NrPages
		}
		pr.Close()
		pages = append(pages, n)
	}
	// ro: all of its 4 MiB; rw: the first half written, and the pages
	// of the second half its checks read (shmem backs even a read of a
	// hole with a page), one in four: 512+128; guarded: its 1 MiB.
	slices.Sort(pages)
	if !slices.Equal(pages, []uint64{256, 640, 1024}) {
		t.Errorf("shared objects hold %v pages, want 256, 640 and 1024", pages)
	}

	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 20)
	var shared []string
	for _, a := range liveAreas(t, s.Pid) {
		if strings.Contains(a.Name, "/dev/zero") {
			shared = append(shared, a.Perms)
		}
	}
	slices.Sort(shared)
	if want := []string{"---s", "r--s", "rw-s", "rw-s"}; !slices.Equal(shared, want) {
		t.Errorf("restored shared mappings %v, want %v", shared, want)
	}
}
