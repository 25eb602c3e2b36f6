package testutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/proc"
)

// MakeCgroup makes a cgroup for a test below the test process's own, in
// the first hierarchy mounted here where it can (a cgroup v1 one if v1 is
// set, whose threads may be in different cgroups), and removes it at the
// end of the test, once its processes are gone. It returns the cgroup's
// directory and its path, as /proc/PID/cgroup shows it; it skips the test
// if no hierarchy takes one.
func MakeCgroup(t testing.TB, v1 bool) (dir, path string) {
	t.Helper()
	mounts, err := proc.ReadMountinfo(0)
	if err != nil {
		t.Fatal(err)
	}
	own, err := proc.ReadCgroupFile(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	cgs, err := proc.ParseCgroup(own)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		for _, cg := range cgs {
			if !m.MountsCgroup(cg.Controllers) || v1 && cg.Hierarchy == 0 {
				continue
			}
			path = filepath.Join(cg.Path, fmt.Sprintf("cryo-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
			dir = filepath.Join(m.Point, path)
			if os.Mkdir(dir, 0o755) != nil {
				continue
			}
			t.Cleanup(func() {
				// Its processes may take a moment to be gone.
				for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
					err := unix.Rmdir(dir)
					if err == nil || errors.Is(err, unix.ENOENT) {
						return
					}
					if time.Now().After(deadline) {
						t.Errorf("remove test cgroup %s: %v", dir, err)
						return
					}
				}
			})
			return dir, path
		}
	}
	t.Skipf("skipped: no cgroup hierarchy (v1 only: %v) takes a new cgroup here", v1)
	return "", ""
}

// EnterCgroup moves process or thread id into the cgroup at dir: into
// cgroup.procs, or for a thread of cgroup v1, tasks.
func EnterCgroup(t testing.TB, dir string, id int, thread bool) {
	t.Helper()
	file := "cgroup.procs"
	if thread {
		file = "tasks"
	}
	if err := os.WriteFile(filepath.Join(dir, file), fmt.Appendf(nil, "%d", id), 0); err != nil {
		t.Fatal(err)
	}
}

// CgroupPaths returns the cgroups of process pid, or of its thread tid,
// as /proc shows them.
func CgroupPaths(t testing.TB, pid, tid int) string {
	t.Helper()
	b, err := proc.ReadCgroupFile(pid, tid)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
