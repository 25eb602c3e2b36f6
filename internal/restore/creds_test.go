package restore_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// nobody is the uid and gid a subject runs as when it must not be root.
const nobody = 65534

// TestRestoreCredentials restores processes whose credentials are not
// those of cryo (root with every capability): a multi-threaded one running
// as another user, and a root one with fewer capabilities and
// no_new_privs. Every thread must get its credentials back, the process
// its dumpable flag (which a change of uid clears), and none of them a
// capability it had given up.
func TestRestoreCredentials(t *testing.T) {
	testutil.RequireRoot(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skipf("needs setpriv (util-linux): %v", err)
	}
	tests := []struct {
		name  string
		start func(t *testing.T) *subject
	}{
		{"sink as nobody", func(t *testing.T) *subject {
			// Where nobody can run the sink and keep its files.
			dir := t.TempDir()
			for _, d := range []string{filepath.Dir(dir), dir} {
				if err := os.Chmod(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			bin := filepath.Join(dir, "sink")
			b, err := os.ReadFile(testutil.BuildC(t, "sink.c"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(bin, b, 0o755); err != nil {
				t.Fatal(err)
			}
			files := filepath.Join(dir, "files")
			if err := os.Mkdir(files, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(files, nobody, nobody); err != nil {
				t.Fatal(err)
			}
			s := testutil.StartSubject(t, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--", bin, files)
			return &subject{Subject: s, dir: files}
		}},
		{"root with fewer capabilities and an ambient one", func(t *testing.T) *subject {
			s := testutil.StartSubject(t, setpriv, "--no-new-privs", "--bounding-set=-sys_admin,-net_raw,-sys_module",
				"--inh-caps=-all,+net_bind_service", "--ambient-caps=+net_bind_service", "--", testutil.BuildC(t, "vdsoclock.c"))
			return &subject{Subject: s}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := tt.start(t)
			s.WaitTicks(t, 3)
			c := dumpAndReap(t, s)
			restoreSubject(t, s, c, restore.Options{})
			s.WaitTicks(t, 2*checkEvery+5)
		})
	}
}

// TestRestoreTHPDisabled restores a process that runs with transparent
// huge pages disabled (prctl PR_SET_THP_DISABLE), which cryo's own
// processes do not.
func TestRestoreTHPDisabled(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "vdsoclock.c")
	// The flag is inherited across fork and exec: the test process holds
	// it while it starts the subject. No other test starts a process
	// meanwhile: this one is not parallel.
	if err := unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	s := &subject{Subject: testutil.StartSubject(t, bin)}
	if err := unix.Prctl(unix.PR_SET_THP_DISABLE, 0, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)
	if got := c.before[fmt.Sprintf("task/%d/status/THP_enabled", s.Pid)]; got != "0" {
		t.Fatalf("subject has THP_enabled %q, want 0", got)
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 10)
}
