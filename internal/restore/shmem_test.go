package restore_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestSharedAnonymousMemory checkpoints shared anonymous mappings, a
// touched and a read-only one: the dump stores each object's touched pages
// once, and the restored process finds its patterns and its untouched
// pages still zero.
func TestSharedAnonymousMemory(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "shmem.c"))}
	c := dumpAndReap(t, s)

	var pages []uint64
	for _, v := range c.im.mm.Vmas {
		if v.GetStatus()&image.VMAAnonShared == 0 {
			continue
		}
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
	// hole with a page), one in four: 512+128.
	if len(pages) != 2 || pages[0]+pages[1] != 1024+640 {
		t.Errorf("shared objects hold %v pages, want 1024 and 640 in some order", pages)
	}

	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 20)
	var shared []string
	for _, a := range liveAreas(t, s.Pid) {
		if strings.Contains(a.Name, "/dev/zero") {
			shared = append(shared, a.Perms)
		}
	}
	if strings.Join(shared, " ") != "r--s rw-s" && strings.Join(shared, " ") != "rw-s r--s" {
		t.Errorf("restored shared mappings %v, want one r--s and one rw-s", shared)
	}
}
