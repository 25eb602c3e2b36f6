package kernel

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOwner sets a pipe's owner and signal and reads them back, with the
// credentials of the thread that set them (root's here).
func TestOwner(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if o, err := GetOwner(p[0]); err != nil || o != (Owner{}) {
		t.Fatalf("a new pipe's owner: %+v, %v; want none", o, err)
	}
	want := Owner{Type: FOwnerPID, Pid: os.Getpid(), Sig: int(unix.SIGUSR2), UID: uint32(os.Getuid()), EUID: uint32(os.Geteuid())}
	if err := SetOwner(p[0], want); err != nil {
		t.Fatal(err)
	}
	if o, err := GetOwner(p[0]); err != nil || o != want {
		t.Errorf("owner %+v, %v; want %+v", o, err, want)
	}
}
