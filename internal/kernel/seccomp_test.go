package kernel_test

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// insn encodes one struct sock_filter.
func insn(code uint16, k uint32) []byte {
	return kernel.Encode(unix.SockFilter{Code: code, K: k})
}

func TestSeccompProgram(t *testing.T) {
	ret := uint16(unix.BPF_RET | unix.BPF_K)
	load := uint16(unix.BPF_LD | unix.BPF_W | unix.BPF_ABS)
	for _, tc := range []struct {
		name     string
		prog     []byte
		notifies bool
		ok       bool
	}{
		{"allow", insn(ret, unix.SECCOMP_RET_ALLOW), false, true},
		{"errno", append(insn(load, 0), insn(ret, unix.SECCOMP_RET_ERRNO|1)...), false, true},
		{"user notification", append(insn(load, 0), insn(ret, unix.SECCOMP_RET_USER_NOTIF)...), true, true},
		{"user notification with data", insn(ret, unix.SECCOMP_RET_USER_NOTIF|7), true, true},
		{"returns the accumulator", append(insn(load, 0), insn(unix.BPF_RET|unix.BPF_A, 0)...), true, true},
		{"a load whose k looks like a notification", append(insn(load, unix.SECCOMP_RET_USER_NOTIF), insn(ret, unix.SECCOMP_RET_ALLOW)...), false, true},
		{"empty", nil, false, false},
		{"half an instruction", insn(ret, 0)[:4], false, false},
		{"too long", make([]byte, (unix.BPF_MAXINSNS+1)*unix.SizeofSockFilter), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			notifies, err := kernel.SeccompProgram(tc.prog)
			if (err == nil) != tc.ok || notifies != tc.notifies {
				t.Errorf("SeccompProgram = %v, %v; want %v, ok %v", notifies, err, tc.notifies, tc.ok)
			}
			if err != nil && !errors.Is(err, kernel.ErrSeccompProgram) {
				t.Errorf("error does not wrap ErrSeccompProgram: %v", err)
			}
		})
	}
}

func FuzzSeccompProgram(f *testing.F) {
	f.Add(insn(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ALLOW))
	f.Add(append(insn(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 0), insn(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_USER_NOTIF)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		notifies, err := kernel.SeccompProgram(b)
		if err != nil && (notifies || !errors.Is(err, kernel.ErrSeccompProgram)) {
			t.Fatalf("SeccompProgram(%x) = %v, %v", b, notifies, err)
		}
		if err == nil && (len(b) == 0 || len(b)%unix.SizeofSockFilter != 0) {
			t.Fatalf("SeccompProgram accepted %d bytes", len(b))
		}
	})
}
