package dump_test

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpRefusesForeignNamespace checks that a descriptor of a namespace
// other than the process's own (it moved to a new network namespace since)
// is refused by name, the process left as it was: a restore could only
// give it its own.
func TestDumpRefusesForeignNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "procfd.c"), "foreign")
	expectRefused(t, s, dump.Options{LeaveRunning: true}, "fd "+s.Ready["net"], "net namespace", "not the process's own")
}

// TestDumpRefusesGoneProcDir checks that a working directory in /proc/PID
// of a process reaped since is refused by name, the process left as it
// was: no restore makes that directory again.
func TestDumpRefusesGoneProcDir(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "procfd.c"), "gonecwd")
	expectRefused(t, s, dump.Options{LeaveRunning: true}, "is of /proc, of a process that is gone")
}

// TestDumpNamespaceFiles dumps test/subjects/procfd.c, which holds its
// namespaces open, and checks with crit that each NS entry names, by its
// clone flag and id, the namespace the process's ids give that id.
func TestDumpNamespaceFiles(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "procfd.c"))
	d := dumpProcess(t, s.Pid, true)
	s.WaitTicks(t, 3)
	critDecode(t, d.dir)
	decode := func(name string, v any) {
		t.Helper()
		out, err := exec.Command("crit", "decode", "-i", filepath.Join(d.dir, name)).Output()
		if err != nil {
			t.Fatalf("crit decode %s: %v", name, err)
		}
		if err := json.Unmarshal(out, v); err != nil {
			t.Fatalf("crit's %s: %v", name, err)
		}
	}
	var ids struct{ Entries []map[string]any }
	decode(image.IDs.FileName(uint32(s.Pid)), &ids)
	var files struct {
		Entries []struct {
			Type string
			Nsf  *struct {
				NsID    uint32 `json:"ns_id"`
				NsCflag uint32 `json:"ns_cflag"`
			}
		}
	}
	decode("files.img", &files)
	field := map[uint32]string{unix.CLONE_NEWNET: "net_ns_id", unix.CLONE_NEWUTS: "uts_ns_id", unix.CLONE_NEWIPC: "ipc_ns_id",
		unix.CLONE_NEWPID: "pid_ns_id", unix.CLONE_NEWUSER: "user_ns_id", unix.CLONE_NEWNS: "mnt_ns_id",
		unix.CLONE_NEWCGROUP: "cgroup_ns_id", unix.CLONE_NEWTIME: "time_ns_id"}
	seen := map[uint32]bool{}
	for _, f := range files.Entries {
		if f.Type != "NS" || f.Nsf == nil {
			continue
		}
		seen[f.Nsf.NsCflag] = true
		if id, ok := ids.Entries[0][field[f.Nsf.NsCflag]].(float64); !ok || uint32(id) != f.Nsf.NsID {
			t.Errorf("NS entry of clone flag %#x names namespace %d; the ids image says %s %v", f.Nsf.NsCflag, f.Nsf.NsID, field[f.Nsf.NsCflag], ids.Entries[0][field[f.Nsf.NsCflag]])
		}
	}
	if len(seen) != len(field) {
		t.Errorf("NS entries for clone flags %v, want all of %v", seen, field)
	}
}

// TestDumpRefusesOtherNamespaces checks that a process in another
// namespace than cryo's, of each kind a restore would give it cryo's of,
// is refused, naming the kind, and goes on: before, it was dumped, and
// restored in cryo's network, mounts, users... (a UTS namespace of its
// own is kept: TestRestoreUTSNamespace)
func TestDumpRefusesOtherNamespaces(t *testing.T) {
	testutil.RequireRoot(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skipf("needs unshare (util-linux): %v", err)
	}
	mdwe := testutil.BuildC(t, "mdwe.c")
	for _, tc := range []struct{ flag, ns string }{
		{"--net", "net"}, {"--mount", "mnt"}, {"--user", "user"}, {"--cgroup", "cgroup"},
	} {
		t.Run(tc.ns, func(t *testing.T) {
			s := testutil.StartSubject(t, unshare, tc.flag, mdwe)
			expectRefused(t, s, dump.Options{LeaveRunning: true}, "in "+tc.ns+" namespace", "not cryo's")
		})
	}
}
