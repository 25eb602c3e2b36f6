package restore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// packetSockets is what sock_diag says of the packet sockets named of
// subject s, by name, their inodes left out.
func packetSockets(t *testing.T, s *subject, names []string) map[string]kernel.PacketDiag {
	t.Helper()
	all, err := kernel.PacketDiagDump()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]kernel.PacketDiag{}
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", s.Pid, s.ReadyUint(t, name)), &st); err != nil {
			t.Fatal(err)
		}
		d, ok := all[uint32(st.Ino)]
		if !ok {
			t.Fatalf("%s: sock_diag does not know socket %d", name, st.Ino)
		}
		d.Ino = 0
		out[name] = d
	}
	return out
}

// TestRestorePacket restores the packet sockets of test/subjects/packet.c,
// of a process root, and of one that became nobody since: each comes back
// as sock_diag said of it (type, protocol, interface, settings,
// memberships, fanout group), owned by the process, with the options the
// subject checks every tick; then the frames the subject sends on lo
// reach its SOCK_RAW and SOCK_DGRAM sockets.
func TestRestorePacket(t *testing.T) {
	testutil.RequireRoot(t)
	names := []string{"raw", "dgram", "send"}
	for _, tc := range []struct {
		name  string
		extra []string
		owner uint32
	}{
		{"root", nil, 0},
		{"nobody", []string{"drop"}, nobody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "packet.c"), append(names, tc.extra...)...)}
			testutil.KillPidsAtCleanup(t, s.Pid)
			s.WaitTicks(t, 2)
			before := packetSockets(t, s, names)
			c := dumpAndReap(t, s)
			restoreSubject(t, s, c, restore.Options{})
			s.WaitTicks(t, 2)
			after := packetSockets(t, s, names)
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("sock_diag after the restore (-before +after):\n%s", diff)
			}
			for _, name := range names {
				var st unix.Stat_t
				if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", s.Pid, s.ReadyUint(t, name)), &st); err != nil {
					t.Fatal(err)
				}
				if st.Uid != tc.owner {
					t.Errorf("%s: restored owned by %d, want %d", name, st.Uid, tc.owner)
				}
			}
			if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(testutil.SubjectTimeout); ; {
				s.WaitTicks(t, 1)
				out := s.Output()
				if strings.Contains(out, "FAIL") {
					t.Fatalf("subject failed:\n%s", out)
				}
				if strings.Contains(out, "got raw ") && strings.Contains(out, "got dgram ") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no frame on both restored sockets:\n%s", out)
				}
			}
		})
	}
}

// TestRestorePacketInterfaceRenamed restores a checkpoint whose packet
// socket was bound to an interface that had another name at the dump (a
// restore on another machine): the restore refuses, naming both names.
func TestRestorePacketInterfaceRenamed(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "packet.c"), "dgram")}
	testutil.KillPidsAtCleanup(t, s.Pid)
	c := dumpAndReap(t, s)
	extras, err := c.im.dir.ReadSockExtras()
	if err != nil {
		t.Fatal(err)
	}
	renamed := 0
	for i := range extras {
		for j := range extras[i].Ifaces {
			extras[i].Ifaces[j].Name = "eth9"
			renamed++
		}
	}
	if renamed != 1 {
		t.Fatalf("%d interfaces named in the extras, want lo alone: %+v", renamed, extras)
	}
	if err := os.Remove(filepath.Join(c.dir, "cryo-sk-extra.img")); err != nil {
		t.Fatal(err)
	}
	if err := c.im.dir.WriteSockExtras(extras); err != nil {
		t.Fatal(err)
	}
	log, buf := newLog()
	_, err = restore.Restore(context.Background(), restore.Options{Dir: c.dir, Log: log})
	if !errors.Is(err, files.ErrInterface) || !strings.Contains(err.Error(), "eth9 at the dump, which is lo here") {
		t.Fatalf("restore: %v, want ErrInterface naming eth9 and lo\nlog:\n%s", err, buf)
	}
}
