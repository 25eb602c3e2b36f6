package kernel

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// FsCreds are the credentials the kernel checks a file access against:
// the filesystem user and group ids, the supplementary groups and the
// effective capabilities (a bit per capability).
type FsCreds struct {
	Fsuid, Fsgid uint32
	Groups       []uint32
	Effective    uint64
}

// Linux keeps credentials per thread. The calls here are raw system calls
// that change the calling thread only, unlike glibc's and Go's syscall
// package's, which change every thread of the process. Their caller must
// hold its OS thread (runtime.LockOSThread) for as long as the thread's
// credentials differ from the process's, and must let the thread die
// rather than unlock it if it cannot switch back.

// ThreadFsCreds returns the calling thread's filesystem credentials.
func ThreadFsCreds() (FsCreds, error) {
	var c FsCreds
	c.Fsuid = setfsid(unix.SYS_SETFSUID, ^uint32(0))
	c.Fsgid = setfsid(unix.SYS_SETFSGID, ^uint32(0))
	groups, err := threadGroups()
	if err != nil {
		return c, err
	}
	c.Groups = groups
	eff, _, err := threadCaps()
	c.Effective = eff
	return c, err
}

// SetThreadFsCreds gives the calling thread the filesystem credentials c,
// with effective capabilities c.Effective limited to those it has
// permitted. Going from filesystem uid 0 to another drops the filesystem
// capabilities from the effective set; they are set explicitly last.
func SetThreadFsCreds(c FsCreds) error {
	_, permitted, err := threadCaps()
	if err != nil {
		return err
	}
	// Changing groups and ids takes CAP_SETGID and CAP_SETUID, which the
	// thread may have lowered.
	if err := setThreadCaps(permitted); err != nil {
		return err
	}
	if err := setThreadGroups(c.Groups); err != nil {
		return err
	}
	for _, id := range []struct {
		nr   uintptr
		want uint32
		name string
	}{{unix.SYS_SETFSGID, c.Fsgid, "setfsgid"}, {unix.SYS_SETFSUID, c.Fsuid, "setfsuid"}} {
		setfsid(id.nr, id.want)
		// setfsuid and setfsgid report no error: read the id back.
		if got := setfsid(id.nr, ^uint32(0)); got != id.want {
			return fmt.Errorf("%s %d: the thread has %d", id.name, id.want, got)
		}
	}
	return setThreadCaps(c.Effective & permitted)
}

// threadGroups returns the calling thread's supplementary groups.
func threadGroups() ([]uint32, error) {
	groups, err := unix.Getgroups()
	if err != nil {
		return nil, fmt.Errorf("getgroups: %w", err)
	}
	out := make([]uint32, len(groups))
	for i, g := range groups {
		out[i] = uint32(g)
	}
	return out, nil
}

// setfsid calls setfsuid or setfsgid, which return the previous id; an
// id of -1 changes nothing.
func setfsid(nr uintptr, id uint32) uint32 {
	old, _, _ := unix.RawSyscall(nr, uintptr(id), 0, 0)
	return uint32(old)
}

// threadCaps returns the calling thread's effective and permitted
// capabilities.
func threadCaps() (eff, permitted uint64, err error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, 0, fmt.Errorf("capget: %w", err)
	}
	return uint64(data[1].Effective)<<32 | uint64(data[0].Effective),
		uint64(data[1].Permitted)<<32 | uint64(data[0].Permitted), nil
}

// setThreadCaps sets the calling thread's effective capabilities, keeping
// its permitted and inheritable sets.
func setThreadCaps(eff uint64) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Effective, data[1].Effective = uint32(eff), uint32(eff>>32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset effective %#x: %w", eff, err)
	}
	return nil
}

// Creds are a process's user and group ids, real, effective and saved,
// and its supplementary groups.
type Creds struct {
	UID, EUID, SUID uint32
	GID, EGID, SGID uint32
	Groups          []uint32
}

// BecomeThread gives the calling thread the credentials c for good: its
// groups, group ids and user ids, the filesystem ones following the
// effective ones. Unless c's ids are 0 the thread loses its capabilities
// and cannot switch back: its goroutine must hold it
// (runtime.LockOSThread) and end without unlocking it, so that the
// thread dies with it.
func BecomeThread(c Creds) error {
	if err := setThreadGroups(c.Groups); err != nil {
		return err
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(c.GID), uintptr(c.EGID), uintptr(c.SGID)); errno != 0 {
		return fmt.Errorf("setresgid %d %d %d: %w", c.GID, c.EGID, c.SGID, errno)
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(c.UID), uintptr(c.EUID), uintptr(c.SUID)); errno != 0 {
		return fmt.Errorf("setresuid %d %d %d: %w", c.UID, c.EUID, c.SUID, errno)
	}
	return nil
}
