package restore_test

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestoreUTSNamespace restores a process in a UTS namespace of its
// own, with a host and domain name of its own: it is in one again, not
// cryo's, with those names, and cryo's names are untouched.
func TestRestoreUTSNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("needs unshare (util-linux): %v", err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	s := &subject{Subject: testutil.StartSubject(t, unshare, "--uts", "sh", "-c",
		`hostname cryo-box && domainname cryo.example && exec "$0"`, testutil.BuildC(t, "sleeper.c"))}
	names := func() string {
		t.Helper()
		var out []string
		for _, cmd := range []string{"hostname", "domainname"} {
			b, err := exec.Command("nsenter", "--target", strconv.Itoa(s.Pid), "--uts", cmd).Output()
			if err != nil {
				t.Fatalf("%s in the namespace of pid %d: %v", cmd, s.Pid, err)
			}
			out = append(out, strings.TrimSpace(string(b)))
		}
		return strings.Join(out, " ")
	}
	s.WaitTicks(t, 2)
	if got := names(); got != "cryo-box cryo.example" {
		t.Fatalf("names before the dump: %q", got)
	}
	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
	own, err := os.Readlink("/proc/self/ns/uts")
	if err != nil {
		t.Fatal(err)
	}
	if its, err := os.Readlink("/proc/" + strconv.Itoa(s.Pid) + "/ns/uts"); err != nil || its == own {
		t.Errorf("restored in UTS namespace %s (%v), cryo's is %s: want one of its own", its, err, own)
	}
	if got := names(); got != "cryo-box cryo.example" {
		t.Errorf("names after the restore: %q, want %q", got, "cryo-box cryo.example")
	}
	if now, _ := os.Hostname(); now != host {
		t.Errorf("cryo's host name is %q, was %q", now, host)
	}
}
