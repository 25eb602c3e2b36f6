package dump_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpRefusesNotify checks that what an inotify or fanotify holds and
// a restore could not bring back is refused by name, the process left as
// it was: events not read yet, a watch on a file no path reaches (procfs
// encodes handles it cannot open), a fanotify filesystem mark (CRIU's
// images have no room for it), signal-driven I/O, a fanotify of a
// process without CAP_SYS_ADMIN, a dnotify registration.
func TestDumpRefusesNotify(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name  string
		parts []string
		want  []string
	}{
		{"events", []string{"noread"}, []string{"inotify fd {ino} has", "bytes of events not read yet"}},
		{"procfs", []string{"proc"}, []string{"inotify fd {ino} watch 4 marks inode", "which no path reaches"}},
		{"filesystem mark", []string{"fanotify", "fs"}, []string{"fanotify fd {fan} has a filesystem mark"}},
		{"signal-driven", []string{"async"}, []string{"inotify fd {ino} has O_ASYNC"}},
		{"no CAP_SYS_ADMIN", []string{"fanotify", "nocap"}, []string{"fd {fan} is a fanotify", "without CAP_SYS_ADMIN"}},
		{"dnotify", []string{"dnotify"}, []string{"fd {dn} is a directory", "dnotify"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := filepath.EvalSymlinks(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			s := testutil.StartSubject(t, testutil.BuildC(t, "notify.c"), append([]string{dir}, tc.parts...)...)
			if tc.name == "events" {
				if err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r := strings.NewReplacer("{ino}", s.Ready["ino"], "{fan}", s.Ready["fan"], "{dn}", s.Ready["dn"])
			var want []string
			for _, w := range tc.want {
				want = append(want, r.Replace(w))
			}
			expectRefused(t, s, dump.Options{LeaveRunning: true}, want...)
		})
	}
}
