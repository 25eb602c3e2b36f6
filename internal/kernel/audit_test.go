package kernel_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestAuditDaemonPid asks the kernel who its audit daemon is: none, or a
// process that exists.
func TestAuditDaemonPid(t *testing.T) {
	testutil.RequireRoot(t)
	pid, err := kernel.AuditDaemonPid()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fmt.Sprint("/proc/", pid)); pid != 0 && err != nil {
		t.Errorf("audit daemon pid %d: %v", pid, err)
	}
}

// auditMessage is a netlink message of type typ holding body.
func auditMessage(typ uint16, body []byte) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(16+len(body)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint64(b, 1)
	return append(b, body...)
}

func TestParseAuditStatus(t *testing.T) {
	real, err := os.ReadFile("testdata/audit-status.bin")
	if err != nil {
		t.Fatal(err)
	}
	eperm := -int32(unix.EPERM)
	status := make([]byte, 40)
	binary.NativeEndian.PutUint32(status[12:], 4242)
	for _, tc := range []struct {
		name    string
		b       []byte
		want    uint32
		wantErr error
	}{
		{name: "this kernel's answer", b: real, want: 0},
		{name: "a daemon", b: auditMessage(1000, status), want: 4242},
		{name: "an error", b: auditMessage(unix.NLMSG_ERROR, binary.NativeEndian.AppendUint32(nil, uint32(eperm))), wantErr: unix.EPERM},
		{name: "an acknowledgement", b: auditMessage(unix.NLMSG_ERROR, make([]byte, 4)), wantErr: kernel.ErrNetlink},
		{name: "another type", b: auditMessage(1001, status), wantErr: kernel.ErrNetlink},
		{name: "status cut", b: auditMessage(1000, status[:15]), wantErr: kernel.ErrNetlink},
		{name: "header cut", b: real[:15], wantErr: kernel.ErrNetlink},
		{name: "longer than the buffer", b: real[:30], wantErr: kernel.ErrNetlink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := kernel.ParseAuditStatus(tc.b)
			if got != tc.want || !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Errorf("ParseAuditStatus = %d, %v; want %d, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func FuzzParseAuditStatus(f *testing.F) {
	real, err := os.ReadFile("testdata/audit-status.bin")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(real)
	f.Fuzz(func(t *testing.T, b []byte) {
		kernel.ParseAuditStatus(b)
	})
}
