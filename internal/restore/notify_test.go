package restore_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// waitLine waits until the subject prints line, after the first skip
// lines.
func waitLine(t *testing.T, s *subject, skip int, line string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if lines := strings.Split(s.Output(), "\n"); len(lines) > skip && slices.Contains(lines[skip:], line) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("subject %d did not print %q; it printed:\n%s", s.Pid, line, tail(s.Output(), 20))
}

func tail(out string, n int) string {
	lines := strings.Split(out, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// critNotify reads, as crit decodes files.img, the watch numbers of each
// inotify and the number of marks of each fanotify, by entry id.
func critNotify(t *testing.T, dir string) (wds map[uint32][]uint32, marks map[uint32]int) {
	t.Helper()
	out, err := exec.Command("crit", "decode", "-i", filepath.Join(dir, "files.img")).Output()
	if err != nil {
		t.Fatalf("crit decode files.img: %v", err)
	}
	var img struct {
		Entries []struct {
			ID  uint32
			Ify *struct{ Wd []struct{ Wd uint32 } }
			Ffy *struct{ Mark []json.RawMessage }
		}
	}
	if err := json.Unmarshal(out, &img); err != nil {
		t.Fatalf("crit's files.img JSON: %v", err)
	}
	wds, marks = map[uint32][]uint32{}, map[uint32]int{}
	for _, e := range img.Entries {
		if e.Ify != nil {
			for _, w := range e.Ify.Wd {
				wds[e.ID] = append(wds[e.ID], w.Wd)
			}
		}
		if e.Ffy != nil {
			marks[e.ID] = len(e.Ffy.Mark)
		}
	}
	return wds, marks
}

// TestRestoreNotify checkpoints test/subjects/notify.c, whose inotify
// watches a directory and files under watch numbers with a gap, and
// restores it: files.img holds the watches (crit reads them), and after
// the restore a file created in the directory and a write into a watched
// file reach the process under their watch numbers; a write into an
// unlinked watched file, which it holds open, too; and a fanotify mark
// reports a write.
func TestRestoreNotify(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name  string
		parts []string
		wds   []uint32
	}{
		{"inotify", nil, []uint32{1, 3}},
		{"deleted", []string{"deleted"}, []uint32{1, 3, 4}},
		{"fanotify", []string{"fanotify"}, []uint32{1, 3}},
		// On a tmpfs of its own, which only the test writes into: the
		// fanotify marks its mount too.
		{"fanotify-mount", []string{"fanotify", "mount"}, []uint32{1, 3}},
		// It holds its inotify's /proc/self/fdinfo open: that exists only
		// once the inotify has its number.
		{"fdinfo", []string{"fdinfo"}, []uint32{1, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := filepath.EvalSymlinks(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			mount := slices.Contains(tc.parts, "mount")
			if mount {
				if err := unix.Mount("cryo-notify", dir, "tmpfs", 0, ""); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
			}
			s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "notify.c"), append([]string{dir}, tc.parts...)...), dir: dir}
			s.WaitTicks(t, 2)
			c := dumpAndReapWith(t, s, dump.Options{})
			ino := uint32(s.ReadyUint(t, "ino"))
			var inoID uint32
			for id, f := range c.im.files {
				if f.GetType() == pb.FdTypes_INOTIFY {
					inoID = id
				}
			}
			wds, marks := critNotify(t, c.dir)
			if d := cmp.Diff(tc.wds, wds[inoID]); d != "" {
				t.Errorf("watch numbers of inotify fd %d as crit reads them (-want +got):\n%s", ino, d)
			}
			fanotify := slices.Contains(tc.parts, "fanotify")
			wantMarks := 1
			if mount {
				wantMarks = 2 // the inode's, the mount's with its ignored mask
			}
			if n := len(marks); fanotify && (n != 1 || slices.Collect(maps.Values(marks))[0] != wantMarks) {
				t.Errorf("fanotify marks as crit reads them: %v, want one fanotify with %d", marks, wantMarks)
			}
			_, log := restoreSubject(t, s, c, restore.Options{})
			s.WaitTicks(t, 2)
			skip := len(strings.Split(s.Output(), "\n")) - 1

			if err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			waitLine(t, s, skip, "event wd=1 mask=0x100 name=new")
			f, err := os.OpenFile(filepath.Join(dir, "watched"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("x"); err != nil {
				t.Fatal(err)
			}
			f.Close()
			waitLine(t, s, skip, "event wd=3 mask=0x2 name=-")
			if slices.Contains(tc.parts, "deleted") {
				poke(t, s.Pid, int(s.ReadyUint(t, "held")))
				waitLine(t, s, skip, "event wd=4 mask=0x2 name=-")
			}
			if fanotify {
				var st unix.Stat_t
				if err := unix.Stat(filepath.Join(dir, "watched"), &st); err != nil {
					t.Fatal(err)
				}
				waitLine(t, s, skip, "fanevent mask=0x2 ino="+strconv.FormatUint(st.Ino, 10))
			}
			if mount {
				other := filepath.Join(dir, "other")
				if err := os.WriteFile(other, []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
				var st unix.Stat_t
				if err := unix.Stat(other, &st); err != nil {
					t.Fatal(err)
				}
				waitLine(t, s, skip, "fanevent mask=0x2 ino="+strconv.FormatUint(st.Ino, 10))
			}
			if t.Failed() {
				t.Logf("restore log:\n%s", log)
			}
		})
	}
}

// TestRestoreBadNotifyImages restores checkpoints of the notify subject
// whose inotify entry is broken or names a file that changed: each fails
// with an error that names the descriptor and leaves nothing running; the
// intact images restore afterwards.
func TestRestoreBadNotifyImages(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "notify.c"), dir), dir: dir}
	c := dumpAndReap(t, s)
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	edited := func(t *testing.T, edit func(f *pb.FileEntry)) string {
		dir := copyDir(t, c.dir)
		var msgs []pb.Message
		for _, id := range slices.Sorted(maps.Keys(c.im.files)) {
			f := pb.Clone(c.im.files[id])
			if f.GetType() == pb.FdTypes_INOTIFY {
				edit(f)
			}
			msgs = append(msgs, f)
		}
		rewriteImage(t, dir, image.Files, 0, msgs...)
		return dir
	}
	for _, tc := range []struct {
		name string
		edit func(f *pb.FileEntry)
		want error
		says string
	}{
		{"without its entry", func(f *pb.FileEntry) { f.Entry = nil }, restore.ErrImage, "INOTIFY without"},
		{"a watch number twice", func(f *pb.FileEntry) { f.GetIfy().Wd[1].Wd = f.GetIfy().Wd[0].Wd }, restore.ErrImage, "repeated"},
		{"a handle longer than its words", func(f *pb.FileEntry) { f.GetIfy().Wd[0].FHandle.Handle = nil }, restore.ErrImage, "file handle"},
		{"an unknown mask bit", func(f *pb.FileEntry) { f.GetIfy().Wd[0].Mask = 1 << 27 }, files.ErrUnsupported, "mask 0x8000000"},
		{"another file at the path", func(f *pb.FileEntry) { f.GetIfy().Wd[1].FHandle.Path = pb.String(other) }, files.ErrChanged, other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.Children(t)
			log, buf := newLog()
			_, err := restore.Restore(context.Background(), restore.Options{Dir: edited(t, tc.edit), Log: log})
			if err == nil {
				s.Restored()
				t.Fatalf("restore of a broken checkpoint succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %q does not wrap %v\nlog:\n%s", err, tc.want, buf)
			}
			for _, w := range []string{tc.says, "fd " + s.Ready["ino"]} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			t.Logf("error: %v", err)
			checkNothingLeft(t, before, s.Pid)
		})
	}
	if t.Failed() {
		return
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 5)
}
