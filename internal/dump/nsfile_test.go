package dump_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpRefusesForeignNamespace checks that a descriptor of a namespace
// other than the process's own (it moved to a new network namespace since)
// is refused by name, the process left as it was: a restore could only
// give it its own.
func TestDumpRefusesForeignNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "procfd.c"), "foreign")
	maps := readMaps(t, s.Pid)
	_, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: filepath.Join(t.TempDir(), "images"), LeaveRunning: true})
	if !errors.Is(err, dump.ErrUnsupported) {
		t.Fatalf("dump: %v, want ErrUnsupported", err)
	}
	for _, w := range []string{"fd " + s.Ready["net"], "net namespace", "not the process's own"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	t.Logf("refused: %v", err)
	if after := readMaps(t, s.Pid); !slices.Equal(maps, after) {
		t.Errorf("the refused dump changed the mappings")
	}
	s.WaitTicks(t, 3)
}
