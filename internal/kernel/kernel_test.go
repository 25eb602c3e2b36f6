package kernel_test

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.Run(m)) }

// TestStructSizes checks the mirrors against the sizes in the uapi headers;
// binary.Size also proves they have no Go padding.
func TestStructSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want int
	}{
		{"clone_args", kernel.CloneArgs{}, 88},
		{"prctl_mm_map", kernel.PrctlMmMap{}, 104},
		{"ptrace_rseq_configuration", kernel.RseqConfiguration{}, 24},
		{"uffdio_api", kernel.UffdioAPI{}, 24},
		{"sigaction", kernel.Sigaction{}, 32},
		{"stack_t", kernel.StackT{}, 24},
		{"itimerval", kernel.Itimerval{}, 32},
		{"sched_param", kernel.SchedParam{}, 4},
		{"flock", kernel.Flock{}, 32},
		{"seccomp_metadata", kernel.SeccompMetadata{}, 16},
		{"sock_fprog", kernel.SockFprog{}, 16},
		{"sigevent", kernel.Sigevent{}, 64},
		{"aio_ring", kernel.AioRing{}, kernel.AioRingHeaderSize},
		{"iocb", kernel.Iocb{}, 64},
		{"io_uring_params", kernel.IOUringParams{}, kernel.IOUringParamsSize},
		{"io_uring_getevents_arg", kernel.IOUringGeteventsArg{}, 24},
		{"io_uring_buf_status", kernel.IOUringBufStatus{}, 40},
		{"itimerspec (x/sys)", unix.ItimerSpec{}, 32},
		{"rlimit (x/sys)", unix.Rlimit{}, 16},
		{"epoll_event (x/sys, packed on x86_64)", unix.EpollEvent{}, 12},
	} {
		if got := binary.Size(tc.v); got != tc.want {
			t.Errorf("struct %s: %d bytes, want %d", tc.name, got, tc.want)
		}
	}
}

// TestDecodeCPUClock decodes the clock ids glibc makes: the caller's
// process and thread clocks, and another's (clock_getcpuclockid,
// pthread_getcpuclockid).
func TestDecodeCPUClock(t *testing.T) {
	for _, tc := range []struct {
		id   int32
		want kernel.CPUClock
		ok   bool
	}{
		{-6, kernel.CPUClock{Pid: 0, Thread: false, Which: 2}, true}, // CLOCK_PROCESS_CPUTIME_ID
		{-2, kernel.CPUClock{Pid: 0, Thread: true, Which: 2}, true},  // CLOCK_THREAD_CPUTIME_ID
		{^int32(4242)<<3 | 2, kernel.CPUClock{Pid: 4242, Which: 2}, true},
		{^int32(4243)<<3 | 4 | 1, kernel.CPUClock{Pid: 4243, Thread: true, Which: 1}, true},
		{-1, kernel.CPUClock{}, false}, // CPUCLOCK_MAX: no clock
		{1, kernel.CPUClock{}, false},
	} {
		got, ok := kernel.DecodeCPUClock(tc.id)
		if got != tc.want || ok != tc.ok {
			t.Errorf("DecodeCPUClock(%d) = %+v, %v; want %+v, %v", tc.id, got, ok, tc.want, tc.ok)
		}
	}
}

// TestClearTimerPrivate clears _sys_private of a timer's signal only.
func TestClearTimerPrivate(t *testing.T) {
	for _, code := range []int32{kernel.SiTimer, -1} {
		var si kernel.Siginfo
		binary.LittleEndian.PutUint32(si[8:], uint32(code))
		for i := 16; i < 40; i++ {
			si[i] = 0xff
		}
		si.ClearTimerPrivate()
		private := binary.LittleEndian.Uint32(si[32:])
		if cleared := private == 0; cleared != (code == kernel.SiTimer) || si[31] != 0xff || si[36] != 0xff {
			t.Errorf("si_code %d: %x after ClearTimerPrivate", code, si[16:40])
		}
	}
}

func TestPrctlMmMapSizeMatchesKernel(t *testing.T) {
	n, err := kernel.PrctlMmMapSize()
	if err != nil {
		t.Fatal(err)
	}
	if want := binary.Size(kernel.PrctlMmMap{}); n != want {
		t.Errorf("kernel's prctl_mm_map is %d bytes, ours %d", n, want)
	}
}

func TestUffdioAPIRequest(t *testing.T) {
	// _IOWR(type, nr, size) in include/uapi/asm-generic/ioctl.h.
	const iocRead, iocWrite, uffdioType, uffdioAPINr = 2, 1, 0xaa, 0x3f
	want := (iocRead|iocWrite)<<30 | binary.Size(kernel.UffdioAPI{})<<16 | uffdioType<<8 | uffdioAPINr
	if kernel.UffdioAPIRequest != want {
		t.Errorf("UFFDIO_API = %#x, want %#x", kernel.UffdioAPIRequest, want)
	}
}

func TestUffdHandshake(t *testing.T) {
	testutil.RequireRoot(t)
	fd, err := kernel.Userfaultfd(unix.O_CLOEXEC | unix.O_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	api, err := kernel.UffdHandshake(fd, 0)
	if err != nil {
		t.Fatal(err)
	}
	if api.API != kernel.UffdAPI || api.Ioctls == 0 {
		t.Errorf("handshake answered %+v, want API %#x and some ioctls", api, kernel.UffdAPI)
	}
	if _, err := kernel.UffdHandshake(fd, 0); !errors.Is(err, unix.EINVAL) {
		t.Errorf("second handshake: got %v, want EINVAL", err)
	}
}

// reap waits for a Clone3Exit child and checks it exited with status 0.
func reap(t *testing.T, pid int) {
	t.Helper()
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
		t.Fatalf("wait for pid %d: %v", pid, err)
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("pid %d ended with status %#x, want exit 0", pid, ws)
	}
}

func TestClone3Exit(t *testing.T) {
	testutil.RequireRoot(t)
	pid, err := kernel.Clone3Exit(nil)
	if err != nil {
		t.Fatal(err)
	}
	reap(t, pid)
	// PIDs are handed out upwards, so the one just freed stays free unless
	// the whole range wraps meanwhile.
	for _, tc := range []struct {
		name    string
		setTid  int32
		want    int
		wantErr error
	}{
		{"free pid", int32(pid), pid, nil},
		{"pid in use", int32(os.Getpid()), 0, unix.EEXIST},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := kernel.Clone3Exit([]int32{tc.setTid})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("clone3 with set_tid %d: got error %v, want %v", tc.setTid, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			reap(t, got)
			if got != tc.want {
				t.Errorf("clone3 with set_tid %d created pid %d", tc.setTid, got)
			}
		})
	}
}

func TestInotifySetNextWd(t *testing.T) {
	// _IOW(type, nr, size) in include/uapi/asm-generic/ioctl.h, of an
	// __s32.
	const iocWrite, inotifyType = 1, 'I'
	if want := iocWrite<<30 | 4<<16 | inotifyType<<8 | 0; kernel.InotifySetNextWd != want {
		t.Errorf("INOTIFY_IOC_SETNEXTWD = %#x, want %#x", kernel.InotifySetNextWd, want)
	}
	if got := kernel.KernelDev(254, 3); got != 0xfe00003 {
		t.Errorf("KernelDev(254, 3) = %#x", got)
	}
	if ma, mi := kernel.KernelDevSplit(0xfe00003); ma != 254 || mi != 3 {
		t.Errorf("KernelDevSplit(0xfe00003) = %d, %d", ma, mi)
	}
}

// TestAioRing checks the check of a ring's header and the nr_events that
// makes a ring of a length again.
func TestAioRing(t *testing.T) {
	whole := kernel.AioRing{Nr: 127, Head: 126, Tail: 0, Magic: kernel.AioRingMagic, CompatFeatures: 1, HeaderLength: 32}
	if err := whole.Check(kernel.PageSize); err != nil {
		t.Errorf("a one-page ring: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(r *kernel.AioRing)
		length uint64
		saying string
	}{
		{"magic", func(r *kernel.AioRing) { r.Magic = 0 }, kernel.PageSize, "magic"},
		{"features", func(r *kernel.AioRing) { r.IncompatFeatures = 1 }, kernel.PageSize, "features"},
		{"header", func(r *kernel.AioRing) { r.HeaderLength = 64 }, kernel.PageSize, "header of 64 bytes"},
		{"part of a ring", func(*kernel.AioRing) {}, 2 * kernel.PageSize, "127 events where 8192 bytes hold 255"},
		{"head", func(r *kernel.AioRing) { r.Head = 127 }, kernel.PageSize, "head 127"},
		{"tail", func(r *kernel.AioRing) { r.Tail = 1000 }, kernel.PageSize, "tail 1000"},
	} {
		r := whole
		tc.change(&r)
		if err := r.Check(tc.length); err == nil || !strings.Contains(err.Error(), tc.saying) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.saying)
		}
	}
	// io_setup(62) makes a ring of one page on a machine of up to 15
	// possible CPUs: 2*62+2 events of 32 bytes and the header, 4096
	// bytes; 254 one of four.
	for length, want := range map[uint64]uint64{kernel.PageSize: 62, 4 * kernel.PageSize: 254} {
		if got := kernel.AioNrEvents(length); got != want || (2*got+2+1)*32 > length {
			t.Errorf("nr_events for a ring of %d bytes: %d, want %d", length, got, want)
		}
	}
}
