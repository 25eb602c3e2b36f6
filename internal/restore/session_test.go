package restore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// startSession starts test/subjects/session.c and returns it and the pids
// of its root, member and grandchild, which a dump of the root takes.
func startSession(t *testing.T) (*testutil.Subject, map[string]int) {
	t.Helper()
	s := testutil.StartSubject(t, testutil.BuildC(t, "session.c"))
	pids := map[string]int{}
	var all []int
	for _, name := range []string{"root", "member", "grandchild"} {
		pids[name] = int(s.ReadyUint(t, name))
		all = append(all, pids[name])
	}
	testutil.KillPidsAtCleanup(t, all...)
	s.WaitTicks(t, 2)
	return s, pids
}

// TestRestoreExitedSessionLeaders checkpoints the root of
// test/subjects/session.c, a process in a session and a process group
// whose leader has exited (a daemon that forked twice), with a child in
// a session of its own whose leader has exited too, and a grandchild in a
// group of that session whose leader has exited. Restored once nothing
// holds those ids any more, each is back in its session and group (made
// again by helpers with the leaders' pids, gone after) with its parent;
// the root's is the restore's.
func TestRestoreExitedSessionLeaders(t *testing.T) {
	testutil.RequireRoot(t)
	s, pids := startSession(t)
	before := readLinks(t, pids)
	dir := filepath.Join(t.TempDir(), "images")
	log, buf := newLog()
	if _, err := dump.Dump(context.Background(), dump.Options{Pid: pids["root"], Dir: dir, Log: log}); err != nil {
		t.Fatalf("dump pid %d: %v\nlog:\n%s", pids["root"], err, buf)
	}
	helpers := []int{before["root"].Session, before["member"].Session, before["grandchild"].Pgrp}
	if err := testutil.WaitPidsFree(append(helpers, pids["root"], pids["member"], pids["grandchild"])...); err != nil {
		t.Fatal(err)
	}
	log, buf = newLog()
	if _, err := restore.Restore(context.Background(), restore.Options{Dir: dir, Log: log}); err != nil {
		t.Fatalf("restore: %v\nlog:\n%s", err, buf)
	}
	s.WaitTicks(t, 3)
	want := before
	root := want["root"]
	root.PPid = os.Getpid()
	want["root"] = root
	if diff := cmp.Diff(want, readLinks(t, pids)); diff != "" {
		t.Errorf("process links (-dumped +restored):\n%s\nlog:\n%s", diff, buf)
	}
	if err := testutil.WaitPidsFree(helpers...); err != nil {
		t.Errorf("a helper is still there: %v", err)
	}
}

// TestRestoreSessionLivesOn refuses to restore test/subjects/session.c's
// root while the session it was in lives on, held by the original left
// running: it is not cryo's session, and no process can enter it.
func TestRestoreSessionLivesOn(t *testing.T) {
	testutil.RequireRoot(t)
	s, pids := startSession(t)
	dir := filepath.Join(t.TempDir(), "images")
	log, buf := newLog()
	if _, err := dump.Dump(context.Background(), dump.Options{Pid: pids["root"], Dir: dir, Log: log, LeaveRunning: true}); err != nil {
		t.Fatalf("dump pid %d: %v\nlog:\n%s", pids["root"], err, buf)
	}
	sid := readLinks(t, pids)["root"].Session
	log, buf = newLog()
	_, err := restore.Restore(context.Background(), restore.Options{Dir: dir, Log: log})
	if !errors.Is(err, restore.ErrUnsupported) || !strings.Contains(err.Error(), fmt.Sprintf("session %d", sid)) {
		t.Fatalf("restore while the root's session %d lives on: %v, want %v naming it\nlog:\n%s", sid, err, restore.ErrUnsupported, buf)
	}
	t.Log(err)
	s.WaitTicks(t, 2)
}
