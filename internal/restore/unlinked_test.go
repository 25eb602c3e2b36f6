package restore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// names lists a directory.
func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// TestRestoreUnlinked checkpoints test/subjects/unlinked.c with
// --link-remap and restores it. Its own checks go on passing: the mode
// with set-id and sticky bits and the mtime of an unlinked file; two
// descriptors and two mappings of one unlinked file still one inode; a
// file unlinked but linked elsewhere still that inode, not a copy; the
// holes of a sparse unlinked file still holes; a removed directory held
// open and as the working directory still one removed directory. No
// name the restore made is left: the link remap goes once the process is
// restored, but stays after a failed restore, for the next one.
func TestRestoreUnlinked(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "unlinked.c"), dir, "attr", "shared", "linked", "holes", "dir"), dir: dir}
	c := dumpAndReapWith(t, s, dump.Options{LinkRemap: true})
	dumped := names(t, dir)
	i := slices.IndexFunc(dumped, func(n string) bool { return strings.HasPrefix(n, "link_remap.") })
	if i < 0 || len(dumped) != 2 {
		t.Fatalf("after the dump %s holds %v, want linked.link and a link remap", dir, dumped)
	}

	before := testutil.Children(t)
	_, err = restore.Restore(context.Background(), restore.Options{Dir: c.dir, FailAt: "creds"})
	if !errors.Is(err, restore.ErrInjected) {
		t.Fatalf("restore failing at creds: %v", err)
	}
	checkNothingLeft(t, s.Pid, before)
	if diff := cmp.Diff(dumped, names(t, dir)); diff != "" {
		t.Errorf("the failed restore changed %s (-before +after):\n%s", dir, diff)
	}

	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 10)
	if diff := cmp.Diff([]string{"linked.link"}, names(t, dir)); diff != "" {
		t.Errorf("after the restore %s holds (-want +got):\n%s", dir, diff)
	}
	// The recreated files have their old names, marked deleted.
	for _, l := range []struct{ link, want string }{
		{"fd/" + s.Ready["attr"], "attr (deleted)"},
		{"fd/" + s.Ready["holes"], "holes (deleted)"},
		{"fd/" + s.Ready["dir"], "gone (deleted)"},
		{"cwd", "gone (deleted)"},
	} {
		if got, err := os.Readlink(proc.Path(s.Pid, l.link)); err != nil || got != filepath.Join(dir, l.want) {
			t.Errorf("%s of the restored process: %q (%v), want %s", l.link, got, err, filepath.Join(dir, l.want))
		}
	}
	maps, err := proc.ReadMaps(s.Pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"map1", "map2"} {
		addr, _ := strconv.ParseUint(s.Ready[k], 0, 64)
		i := slices.IndexFunc(maps, func(m proc.Mapping) bool { return m.Start == addr })
		if want := filepath.Join(dir, "shared (deleted)"); i < 0 || maps[i].Path != want {
			t.Errorf("%s: no mapping of %s at %#x", k, want, addr)
		}
	}
}
