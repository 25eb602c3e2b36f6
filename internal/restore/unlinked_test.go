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
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
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
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "unlinked.c"), dir, "attr", "shared", "linked", "holes", "dir", "big", "symlink", "dev"), dir: dir}
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
	checkNothingLeft(t, before, s.Pid)
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
		{"fd/" + s.Ready["symlink"], "symlink (deleted)"},
		{"fd/" + s.Ready["dev"], "null (deleted)"},
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

// TestRestoreBadUnlinkedImages restores broken checkpoints of unlinked
// files: each fails with a clear error, leaves nothing running and no
// name behind, and the original images restore afterwards.
func TestRestoreBadUnlinkedImages(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "unlinked.c"), dir, "attr", "linked", "holes"), dir: dir}
	c := dumpAndReapWith(t, s, dump.Options{LinkRemap: true})
	dumped := names(t, dir)
	remaps, err := image.ReadAll[pb.RemapFilePathEntry](c.im.dir, image.RemapFpath, 0)
	if err != nil {
		t.Fatal(err)
	}
	fdFile := func(key string) uint32 {
		fds, err := image.ReadAll[pb.FdinfoEntry](c.im.dir, image.Fdinfo, uint32(s.Pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range fds {
			if strconv.Itoa(int(e.GetFd())) == s.Ready[key] {
				return e.GetId()
			}
		}
		t.Fatalf("no fd %s in the images", key)
		return 0
	}
	remapOf := func(key string) *pb.RemapFilePathEntry {
		id := fdFile(key)
		i := slices.IndexFunc(remaps, func(r *pb.RemapFilePathEntry) bool { return r.GetOrigId() == id })
		if i < 0 {
			t.Fatalf("fd %s (file %d) is not remapped", key, id)
		}
		return remaps[i]
	}
	// writeGhost replaces the ghost of fd key with an entry and chunks.
	writeGhost := func(t *testing.T, dir, key string, e *pb.GhostFileEntry, chunks ...*pb.GhostChunkEntry) {
		id := remapOf(key).GetRemapId()
		if err := os.Remove(filepath.Join(dir, image.GhostFile.FileName(id))); err != nil {
			t.Fatal(err)
		}
		d, err := image.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		w, err := d.Create(image.GhostFile, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
		for _, c := range chunks {
			if err := errors.Join(w.Write(c), w.WritePayload(make([]byte, c.GetLen()))); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	holes := &pb.GhostFileEntry{Uid: 0, Gid: 0, Mode: unix.S_IFREG | 0o600,
		Chunks: pb.Bool(true), Size: pb.Uint64(5 * pageSize)}
	chunk := func(off, n uint64) *pb.GhostChunkEntry {
		return &pb.GhostChunkEntry{Off: off, Len: n}
	}
	tests := []struct {
		name   string
		broken func(t *testing.T) string
		is     error
		want   string
	}{
		{"chunk past the size", func(t *testing.T) string {
			d := copyDir(t, c.dir)
			writeGhost(t, d, "holes", holes, chunk(4*pageSize, 2*pageSize))
			return d
		}, restore.ErrImage, "chunk"},
		{"chunks out of order", func(t *testing.T) string {
			d := copyDir(t, c.dir)
			writeGhost(t, d, "holes", holes, chunk(2*pageSize, pageSize), chunk(pageSize, pageSize))
			return d
		}, restore.ErrImage, "chunk"},
		{"chunks without a size", func(t *testing.T) string {
			d := copyDir(t, c.dir)
			e := pb.Clone(holes)
			e.Size = nil
			writeGhost(t, d, "holes", e, chunk(0, pageSize))
			return d
		}, restore.ErrImage, "size"},
		{"truncated chunk", func(t *testing.T) string {
			d := copyDir(t, c.dir)
			name := filepath.Join(d, image.GhostFile.FileName(remapOf("holes").GetRemapId()))
			st, err := os.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(name, st.Size()-10); err != nil {
				t.Fatal(err)
			}
			return d
		}, restore.ErrImage, "ghost-file"},
		{"ghost of a socket", func(t *testing.T) string {
			d := copyDir(t, c.dir)
			writeGhost(t, d, "attr", &pb.GhostFileEntry{Uid: 0, Gid: 0, Mode: unix.S_IFSOCK | 0o600})
			return d
		}, restore.ErrUnsupported, "mode"},
		{"ghost of /dev/mem", func(t *testing.T) string {
			d := copyDir(t, c.dir)
			writeGhost(t, d, "attr", &pb.GhostFileEntry{Uid: 65534, Gid: 65534, Mode: unix.S_IFCHR | 0o600, Rdev: pb.Uint32(1<<20 | 1)})
			return d
		}, restore.ErrUnsupported, "not null, zero"},
		{"ghost of a device of no number", func(t *testing.T) string {
			d := copyDir(t, c.dir)
			writeGhost(t, d, "attr", &pb.GhostFileEntry{Uid: 0, Gid: 0, Mode: unix.S_IFCHR | 0o600})
			return d
		}, restore.ErrImage, "no number"},
		{"symbolic link to nothing", func(t *testing.T) string {
			d := copyDir(t, c.dir)
			writeGhost(t, d, "attr", &pb.GhostFileEntry{Uid: 0, Gid: 0, Mode: unix.S_IFLNK | 0o777})
			return d
		}, restore.ErrImage, "to nothing"},
		{"link remap to no entry", func(t *testing.T) string {
			d := copyDir(t, c.dir)
			var msgs []pb.Message
			for _, r := range remaps {
				r = pb.Clone(r)
				if r.GetRemapType() == pb.RemapType_LINKED {
					r.RemapId = 9999
				}
				msgs = append(msgs, r)
			}
			rewriteImage(t, d, image.RemapFpath, 0, msgs...)
			return d
		}, restore.ErrImage, "link remap"},
		{"link remap removed", func(t *testing.T) string {
			link := c.im.files[remapOf("linked").GetRemapId()].GetReg().GetName()
			if err := os.Rename(link, link+".away"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Rename(link+".away", link) })
			return c.dir
		}, unix.ENOENT, "link remap"},
	}
	before := testutil.Children(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.broken(t)
			_, err := restore.Restore(context.Background(), restore.Options{Dir: d})
			if err == nil {
				s.Restored()
				t.Fatal("restore of a broken checkpoint succeeded")
			}
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want %v saying %q", err, tt.is, tt.want)
			}
			t.Logf("error: %v", err)
			checkNothingLeft(t, before, s.Pid)
			if tt.is != unix.ENOENT {
				if diff := cmp.Diff(dumped, names(t, dir)); diff != "" {
					t.Errorf("the failed restore changed %s (-before +after):\n%s", dir, diff)
				}
			}
		})
	}
	if t.Failed() {
		return
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 10)
}

// TestRestoreDeletedExecutable checkpoints a copy of
// test/subjects/unlinked.c that deleted its own executable and restores
// it: its executable and the mappings of its code are again one deleted
// file (its own check), under the old name.
func TestRestoreDeletedExecutable(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(testutil.BuildC(t, "unlinked.c"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "unlinked-copy")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &subject{Subject: testutil.StartSubject(t, bin, dir, "exe"), dir: dir}
	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 10)
	if got, err := os.Readlink(proc.Path(s.Pid, "exe")); err != nil || got != bin+" (deleted)" {
		t.Errorf("exe of the restored process: %q (%v), want %s (deleted)", got, err, bin)
	}
	if left := names(t, dir); len(left) != 0 {
		t.Errorf("the restore left %v in %s", left, dir)
	}
}

// TestRestoreGhostThroughSymlink restores an unlinked file whose
// directory was replaced by a symbolic link after the dump: the restore
// fails naming the directory, and creates nothing where the link leads
// (root would otherwise write the file's contents there).
func TestRestoreGhostThroughSymlink(t *testing.T) {
	testutil.RequireRoot(t)
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "files")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "unlinked.c"), dir, "attr"), dir: dir}
	c := dumpAndReap(t, s)
	before := testutil.Children(t)
	target := t.TempDir()
	if err := os.Rename(dir, dir+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, dir); err != nil {
		t.Fatal(err)
	}
	log, buf := newLog()
	_, err = restore.Restore(context.Background(), restore.Options{Dir: c.dir, Log: log})
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("restore: %v, want an error naming %s\nlog:\n%s", err, dir, buf)
	}
	if ents, err := os.ReadDir(target); err != nil || len(ents) > 0 {
		t.Errorf("the restore left %v (%v) where the link leads", ents, err)
	}
	checkNothingLeft(t, before, s.Pid)
}
