package restore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// fileidEnv is where a fileid subject keeps its files: own, nobody's in a
// directory of nobody's; root, root's 0600 file in a directory only root
// may enter, which the subject opened before it dropped privileges; and
// shadow, a root-only file nobody can reach but not read.
type fileidEnv struct {
	ownDir, own, root, shadow string
	// out is the subject's output, which it holds O_APPEND; images is
	// its checkpoint.
	out, images string
}

func newFileidEnv(t *testing.T) fileidEnv {
	t.Helper()
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := fileidEnv{ownDir: filepath.Join(base, "nobody"), shadow: filepath.Join(base, "shadow")}
	e.own = filepath.Join(e.ownDir, "own")
	e.root = filepath.Join(base, "root", "secret")
	mkdir(t, e.ownDir, 0o700, nobody)
	mkdir(t, filepath.Dir(e.root), 0o700, 0)
	writeOwned(t, e.own, "own-data\n", nobody)
	writeOwned(t, e.root, "root-secret\n", 0)
	writeOwned(t, e.shadow, "shadow-data\n", 0)
	return e
}

func mkdir(t *testing.T, path string, mode os.FileMode, owner int) {
	t.Helper()
	if err := os.Mkdir(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, owner, owner); err != nil {
		t.Fatal(err)
	}
}

// writeOwned writes a 0600 file of owner's.
func writeOwned(t *testing.T, path, data string, owner int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(path, owner, owner); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreChangedFiles restores a process running as nobody after its
// files changed. A restore runs as root: it must never hand the process a
// file it could not open itself, through a symbolic link put in the
// dumped path, nor any file other than the one dumped, and must say what
// changed. The root-owned file the process was given before it dropped
// privileges is restored as long as it is the very inode it held, and its
// own /proc/PID/stat is its own again.
func TestRestoreChangedFiles(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "fileid.c")
	tests := []struct {
		name   string
		change func(t *testing.T, e fileidEnv)
		allow  func(e fileidEnv) []string
		// want: the error and what it says beside the file's name (file,
		// if set); nil for a restore that must succeed.
		want     error
		says     string
		file     func(e fileidEnv) string
		ownAfter string
		warns    string // in the log of a restore that succeeds
	}{
		{name: "unchanged", change: func(*testing.T, fileidEnv) {}, ownAfter: "own-data"},
		{
			name: "own file replaced by a symlink to a root-only file",
			change: func(t *testing.T, e fileidEnv) {
				must(t, os.Remove(e.own))
				must(t, os.Symlink(e.shadow, e.own))
				must(t, os.Lchown(e.own, nobody, nobody))
			},
			want: files.ErrChanged, says: "symbolic link", file: func(e fileidEnv) string { return e.own },
		},
		{
			name: "a directory of the path replaced by a symlink to it",
			change: func(t *testing.T, e fileidEnv) {
				must(t, os.Rename(e.ownDir, e.ownDir+".moved"))
				must(t, os.Symlink(filepath.Base(e.ownDir)+".moved", e.ownDir))
			},
			want: files.ErrChanged, says: "symbolic link", file: func(e fileidEnv) string { return e.own },
		},
		{
			name: "its symbolic link replaced by one to a root-only file",
			change: func(t *testing.T, e fileidEnv) {
				must(t, os.Remove(e.own+".link"))
				must(t, os.Symlink(e.shadow, e.own+".link"))
				must(t, os.Lchown(e.own+".link", nobody, nobody))
			},
			want: files.ErrChanged, says: "size", file: func(e fileidEnv) string { return e.own + ".link" },
		},
		{
			name: "own file replaced by another",
			change: func(t *testing.T, e fileidEnv) {
				time.Sleep(10 * time.Millisecond) // a later mtime even on coarse clocks
				must(t, os.Remove(e.own))
				writeOwned(t, e.own, "new-data\n", nobody)
			},
			want: files.ErrChanged, says: "mtime", file: func(e fileidEnv) string { return e.own },
		},
		{
			name: "its append-only output grew",
			change: func(t *testing.T, e fileidEnv) {
				f, err := os.OpenFile(e.out, os.O_WRONLY|os.O_APPEND, 0)
				must(t, err)
				_, err = f.WriteString("written after the dump\n")
				must(t, errors.Join(err, f.Close()))
			},
			ownAfter: "own-data", warns: "append-only file grew since the dump",
		},
		{
			name:   "its append-only output shrank",
			change: func(t *testing.T, e fileidEnv) { must(t, os.Truncate(e.out, 1)) },
			want:   files.ErrChanged, says: "size", file: func(e fileidEnv) string { return e.out },
		},
		{
			// As in a checkpoint CRIU made: nothing tells that root's
			// file, or the executable in a directory only root may
			// enter, is the one the process held.
			name:   "no record of the files' identity",
			change: func(t *testing.T, e fileidEnv) { must(t, os.Remove(filepath.Join(e.images, "cryo-file-stat.img"))) },
			want:   files.ErrAccess, says: "the images do not record which file the process held",
		},
		{
			name:   "own file replaced by a root-only file",
			change: func(t *testing.T, e fileidEnv) { must(t, os.Rename(e.shadow, e.own)) },
			want:   files.ErrAccess, says: "fsuid 65534 may not read and write it", file: func(e fileidEnv) string { return e.own },
		},
		{
			name:   "own file truncated",
			change: func(t *testing.T, e fileidEnv) { must(t, os.Truncate(e.own, 0)) },
			want:   files.ErrChanged, says: "size 9 at dump, 0 now", file: func(e fileidEnv) string { return e.own },
		},
		{
			name:     "own file truncated, restored as asked",
			change:   func(t *testing.T, e fileidEnv) { must(t, os.Truncate(e.own, 0)) },
			allow:    func(e fileidEnv) []string { return []string{e.own} },
			ownAfter: "-", warns: "file changed since the dump, restored as asked",
		},
		{
			name: "own file replaced by a directory",
			change: func(t *testing.T, e fileidEnv) {
				must(t, os.Remove(e.own))
				mkdir(t, e.own, 0o700, nobody)
			},
			want: files.ErrChanged, says: "a regular file at dump, a directory now", file: func(e fileidEnv) string { return e.own },
		},
		{
			// Same owner, mode, size and times: only the inode tells, and
			// the process could not open the new file itself.
			name: "root's file replaced by a look-alike",
			change: func(t *testing.T, e fileidEnv) {
				st, err := os.Stat(e.root)
				must(t, err)
				must(t, os.Remove(e.root))
				writeOwned(t, e.root, "root-secret\n", 0)
				must(t, os.Chtimes(e.root, st.ModTime(), st.ModTime()))
			},
			want: files.ErrAccess, says: "not the file the process held", file: func(e fileidEnv) string { return e.root },
		},
		{
			name: "root's file replaced, --allow-changed for it",
			change: func(t *testing.T, e fileidEnv) {
				must(t, os.Remove(e.root))
				writeOwned(t, e.root, "other\n", 0)
			},
			allow: func(e fileidEnv) []string { return []string{e.root} },
			want:  files.ErrAccess, says: "not the file the process held", file: func(e fileidEnv) string { return e.root },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFileidEnv(t)
			s := &subject{Subject: testutil.StartSubject(t, bin, e.own, e.root)}
			s.WaitTicks(t, 2)
			if tick := s.LastTick(); tick["uid"] != "65534" || tick["root"] != "root-secret" {
				t.Fatalf("subject before the dump: %v", tick)
			}
			c := dumpAndReap(t, s)
			e.out, e.images = s.OutPath, c.dir
			tt.change(t, e)
			var opts restore.Options
			if tt.allow != nil {
				opts.AllowChanged = tt.allow(e)
			}
			if tt.want == nil {
				_, log := restoreSubject(t, s, c, opts)
				s.WaitTicks(t, 3)
				tick := s.LastTick()
				if tick["uid"] != "65534" || tick["own"] != tt.ownAfter || tick["root"] != "root-secret" || tick["proc"] != strconv.Itoa(s.Pid) {
					t.Errorf("restored subject: %v, want uid 65534, own %s, root root-secret, proc %d", tick, tt.ownAfter, s.Pid)
				}
				if !strings.Contains(log.String(), tt.warns) {
					t.Errorf("no warning %q in the log:\n%s", tt.warns, log)
				}
				return
			}
			log, buf := newLog()
			opts.Dir, opts.Log = c.dir, log
			_, err := restore.Restore(context.Background(), opts)
			file := "" // any
			if tt.file != nil {
				file = tt.file(e) + ": "
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), "file "+file) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("restore: %v\nwant %v naming file %s and saying %q\nlog:\n%s", err, tt.want, file, tt.says, buf)
			}
			if !strings.Contains(err.Error(), "images: ") {
				t.Errorf("restore failed after the images step: %v", err)
			}
			t.Log(err)
		})
	}
}

// TestRestoreRebuiltExecutable restores a process whose executable was
// rebuilt after the dump: it must not run the new code with the old
// memory.
func TestRestoreRebuiltExecutable(t *testing.T) {
	testutil.RequireRoot(t)
	exe := filepath.Join(t.TempDir(), "vdsoclock")
	copyFile(t, testutil.BuildC(t, "vdsoclock.c"), exe)
	s := &subject{Subject: testutil.StartSubject(t, exe)}
	s.WaitTicks(t, 2)
	c := dumpAndReap(t, s)
	copyFile(t, testutil.BuildC(t, "vdsoclock.c", "-O1"), exe)
	log, buf := newLog()
	_, err := restore.Restore(context.Background(), restore.Options{Dir: c.dir, Log: log})
	if !errors.Is(err, files.ErrChanged) || !strings.Contains(err.Error(), "file "+exe+": ") || !strings.Contains(err.Error(), "build-id ") {
		t.Fatalf("restore: %v\nwant %v naming %s and its build-id\nlog:\n%s", err, files.ErrChanged, exe, buf)
	}
	t.Log(err)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	must(t, err)
	must(t, os.WriteFile(to, b, 0o755))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
