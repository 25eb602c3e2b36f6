package check

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
	"github.com/cryo-cr/cryo/internal/vdso"
)

func probeSeize() error {
	return traced(func(s *subject, tr *ptrace.Tracer) error {
		for _, tid := range tr.Threads() {
			st, err := proc.ReadTaskStat(s.pid, tid)
			if err != nil {
				return err
			}
			if st.State != 't' {
				return fmt.Errorf("thread %d is in state %c after the interrupt, not t (tracing stop)", tid, st.State)
			}
		}
		return nil
	})
}

func probeInject() error {
	return traced(func(s *subject, tr *ptrace.Tracer) error {
		pid, err := tr.Syscall(s.pid, unix.SYS_GETPID)
		if err != nil {
			return err
		}
		if pid != uint64(s.pid) {
			return fmt.Errorf("injected getpid returned %d in pid %d", pid, s.pid)
		}
		addr, err := tr.Syscall(s.pid, unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		if err != nil {
			return err
		}
		msg := []byte("cryo check")
		back := make([]byte, len(msg))
		if err := tr.WriteMem(addr, msg); err != nil {
			return err
		}
		if err := tr.ReadMem(addr, back); err != nil {
			return err
		}
		if !bytes.Equal(back, msg) {
			return fmt.Errorf("injected mmap: wrote %q, read back %q", msg, back)
		}
		_, err = tr.Syscall(s.pid, unix.SYS_MUNMAP, addr, 4096)
		return err
	})
}

func probeRseq() error {
	return traced(func(s *subject, tr *ptrace.Tracer) error {
		for _, tid := range tr.Threads() {
			if _, err := tr.GetRseqConfiguration(tid); err != nil {
				return err
			}
		}
		return nil
	})
}

func probeSuspendSeccomp() error {
	return traced(func(s *subject, tr *ptrace.Tracer) error { return tr.SuspendSeccomp() })
}

func probeProcessVM() error {
	s, err := startSubject()
	if err != nil {
		return err
	}
	defer s.stop()
	msg := []byte("written by cryo check with process_vm_writev")
	back := make([]byte, len(msg))
	for _, op := range []struct {
		name string
		f    func(int, []unix.Iovec, []unix.RemoteIovec, uint) (int, error)
		b    []byte
	}{
		{"process_vm_writev", unix.ProcessVMWritev, msg},
		{"process_vm_readv", unix.ProcessVMReadv, back},
	} {
		local := []unix.Iovec{{Base: &op.b[0]}}
		local[0].SetLen(len(op.b))
		// Short counts are how these calls report an unmapped page.
		n, err := op.f(s.pid, local, []unix.RemoteIovec{{Base: uintptr(s.buf), Len: len(op.b)}}, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", op.name, err)
		}
		if n != len(op.b) {
			return fmt.Errorf("%s: %d bytes of %d", op.name, n, len(op.b))
		}
	}
	if !bytes.Equal(back, msg) {
		return fmt.Errorf("process_vm_readv read %q where process_vm_writev wrote %q", back, msg)
	}
	return nil
}

func probePidfd() error {
	s, err := startSubject()
	if err != nil {
		return err
	}
	defer s.stop()
	pidfd, err := unix.PidfdOpen(s.pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, 0, 0)
	if err != nil {
		return fmt.Errorf("pidfd_getfd: %w", err)
	}
	defer unix.Close(fd)
	// The subject's stdin is the pipe whose other end we hold.
	var got, want unix.Stat_t
	if err := unix.Fstat(fd, &got); err != nil {
		return err
	}
	if err := unix.Fstat(int(s.in.Fd()), &want); err != nil {
		return err
	}
	if got.Dev != want.Dev || got.Ino != want.Ino {
		return fmt.Errorf("pidfd_getfd of the subject's stdin gave inode %d, want the pipe %d", got.Ino, want.Ino)
	}
	return nil
}

func probeClone3() error {
	// PIDs are handed out upwards, so one just freed stays free until the
	// range wraps.
	free, err := clone3Reaped(nil)
	if err != nil {
		return err
	}
	got, err := clone3Reaped([]int32{int32(free)})
	if err != nil {
		return err
	}
	if got != free {
		return fmt.Errorf("clone3 with set_tid %d created pid %d", free, got)
	}
	if _, err := kernel.Clone3Exit([]int32{int32(os.Getpid())}); !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("clone3 with a set_tid in use: got %v, want EEXIST", err)
	}
	return nil
}

// clone3Reaped creates a child that exits at once and reaps it.
func clone3Reaped(setTid []int32) (int, error) {
	pid, err := kernel.Clone3Exit(setTid)
	if err != nil {
		return 0, err
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
		return 0, fmt.Errorf("wait for clone3 child %d: %w", pid, err)
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return 0, fmt.Errorf("clone3 child %d ended with status %#x", pid, ws)
	}
	return pid, nil
}

// probeMmMap sets this process's mm fields to what they are.
func probeMmMap() error {
	size, err := kernel.PrctlMmMapSize()
	if err != nil {
		return err
	}
	if want := binary.Size(kernel.PrctlMmMap{}); size != want {
		return fmt.Errorf("%w: prctl_mm_map is %d bytes, cryo's %d", kernel.ErrStructSize, size, want)
	}
	st, err := proc.ReadStat(0)
	if err != nil {
		return err
	}
	// brk(0) fails to move the break and returns where it is.
	brk, _, _ := unix.Syscall(unix.SYS_BRK, 0, 0, 0)
	auxv, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return err
	}
	return kernel.SetMmMap(kernel.PrctlMmMap{
		StartCode: st.StartCode, EndCode: st.EndCode,
		StartData: st.StartData, EndData: st.EndData,
		StartBrk: st.StartBrk, Brk: uint64(brk),
		StartStack: st.StartStack,
		ArgStart:   st.ArgStart, ArgEnd: st.ArgEnd,
		EnvStart: st.EnvStart, EnvEnd: st.EnvEnd,
		ExeFD: kernel.KeepExe,
	}, auxv)
}

func probeUserfaultfd() error {
	fd, err := kernel.Userfaultfd(unix.O_CLOEXEC | unix.O_NONBLOCK)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = kernel.UffdHandshake(fd, 0)
	return err
}

// probeTimens makes a time namespace with offsets, as a restore does,
// and checks that a process started in it sees them.
func probeTimens() error {
	const offset = 10 * 24 * time.Hour
	if unix.Gettid() != os.Getpid() {
		return errors.New("the time namespace probe must run on the main thread")
	}
	if err := unix.Unshare(unix.CLONE_NEWTIME); err != nil {
		return fmt.Errorf("unshare time namespace: %w", err)
	}
	ns, err := os.Readlink("/proc/self/ns/time_for_children")
	if err != nil {
		return err
	}
	secs := int64(offset / time.Second)
	offsets := fmt.Sprintf("monotonic %d 0\nboottime %d 0\n", secs, secs)
	if err := os.WriteFile("/proc/self/timens_offsets", []byte(offsets), 0); err != nil {
		return fmt.Errorf("set time namespace offsets: %w", err)
	}
	s, err := startSubject()
	if err != nil {
		return err
	}
	defer s.stop()
	now := monotonic()
	if got, err := os.Readlink(proc.Path(s.pid, "ns/time")); err != nil || got != ns {
		return fmt.Errorf("a child is in time namespace %q (%v), want the new %q", got, err, ns)
	}
	// The subject read its clock before ours, less than the probe's
	// timeout earlier.
	if d := s.monotonic - now; d > offset || d < offset-timeout {
		return fmt.Errorf("a child's monotonic clock is %v ahead, want %v", d, offset)
	}
	return nil
}

func probeVDSOLayout() error {
	snap, err := vdso.ReadLive(0)
	if err != nil {
		return err
	}
	if snap.Image == nil {
		return vdso.ErrNoVDSO
	}
	return nil
}

// probeVDSOMremap moves a subject's vDSO mappings, one at a time, calls
// clock_gettime through the moved vDSO, and moves them back.
func probeVDSOMremap() error {
	return traced(func(s *subject, tr *ptrace.Tracer) error {
		snap, err := vdso.ReadLive(s.pid)
		if err != nil {
			return err
		}
		if snap.Image == nil {
			return vdso.ErrNoVDSO
		}
		sym, ok := snap.Image.Lookup("__vdso_clock_gettime", "LINUX_2.6")
		if !ok {
			return errors.New("the vDSO has no __vdso_clock_gettime@LINUX_2.6")
		}
		start, end := snap.Layout.Span()
		hole, err := tr.Syscall(s.pid, unix.SYS_MMAP, 0, end-start, unix.PROT_NONE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE, ^uint64(0), 0)
		if err != nil {
			return fmt.Errorf("reserve room for the vDSO: %w", err)
		}
		moved, err := move(tr, s.pid, snap.Layout, hole-start)
		if err != nil {
			return err
		}
		buf, err := tr.Scratch(s.pid)
		if err != nil {
			return err
		}
		before := monotonic()
		ret, err := tr.Call(s.pid, hole+snap.VDSOAddr()-start+sym.Offset, unix.CLOCK_MONOTONIC, buf)
		after := monotonic()
		if err != nil {
			return fmt.Errorf("clock_gettime through the moved vDSO: %w", err)
		}
		if ret != 0 {
			return fmt.Errorf("clock_gettime through the moved vDSO returned %d", int64(ret))
		}
		b := make([]byte, 16)
		if err := tr.ReadMem(buf, b); err != nil {
			return err
		}
		got := time.Duration(binary.NativeEndian.Uint64(b))*time.Second + time.Duration(binary.NativeEndian.Uint64(b[8:]))
		if got < before || got > after {
			return fmt.Errorf("clock_gettime through the moved vDSO said %v, want between %v and %v", got, before, after)
		}
		if _, err := move(tr, s.pid, moved, start-hole); err != nil {
			return err
		}
		// Whatever the moved mappings left of the reservation.
		_, err = tr.Syscall(s.pid, unix.SYS_MUNMAP, hole, end-start)
		return err
	})
}

// move mremaps every region of l by delta (modulo 2^64), one at a time
// since mremap cannot span mappings, and checks the result in the maps.
func move(tr *ptrace.Tracer, pid int, l vdso.Layout, delta uint64) (vdso.Layout, error) {
	var want vdso.Layout
	for _, r := range l {
		to := r.Start + delta
		got, err := tr.Syscall(pid, unix.SYS_MREMAP, r.Start, r.Size(), r.Size(), unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, to)
		if err != nil {
			return nil, fmt.Errorf("mremap %v from %#x to %#x: %w", r.Kind, r.Start, to, err)
		}
		if got != to {
			return nil, fmt.Errorf("mremap %v to %#x moved it to %#x", r.Kind, to, got)
		}
		want = append(want, vdso.Region{Kind: r.Kind, Start: to, End: r.End + delta})
	}
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		return nil, err
	}
	if got := vdso.LayoutFromMaps(maps); !slices.Equal(got, want) {
		return nil, fmt.Errorf("after mremap the maps show %v, want %v", got, want)
	}
	return want, nil
}
