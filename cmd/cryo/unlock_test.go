package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/netlock"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestUnlockCommand keeps a network lock and has `cryo unlock` list it and
// remove it.
func TestUnlockCommand(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "./cmd/cryo")
	id := fmt.Sprintf("test-%d-unlock", os.Getpid())
	t.Cleanup(func() { netlock.Unlock(id) })
	l, err := netlock.Take(id, nil)
	if err == nil {
		err = l.Keep()
	}
	if err != nil {
		t.Fatal(err)
	}
	listed := func() bool {
		t.Helper()
		out, errOut, code := runBinary(t, bin, "unlock")
		if code != 0 {
			t.Fatalf("cryo unlock: exit status %d, stderr %q", code, errOut)
		}
		return slices.Contains(strings.Split(out, "\n"), id)
	}
	if !listed() {
		t.Fatalf("cryo unlock does not list kept lock %s", id)
	}
	if _, errOut, code := runBinary(t, bin, "unlock", id, id+"-none"); code != 0 {
		t.Fatalf("cryo unlock %s %s-none: exit status %d, stderr %q", id, id, code, errOut)
	}
	if listed() {
		t.Errorf("cryo unlock %s left the lock", id)
	}
	if _, errOut, code := runBinary(t, bin, "unlock", ""); code != 1 || !strings.Contains(errOut, "bad lock id") {
		t.Errorf("cryo unlock '': exit status %d, stderr %q; want 1 and \"bad lock id\"", code, errOut)
	}
}
