package kernel

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// The audit messages cryo sends and reads (include/uapi/linux/audit.h).
const (
	auditGet = 1000 // AUDIT_GET: the kernel answers with a struct audit_status
	// auditStatusPid is the offset of pid in struct audit_status, after
	// mask, enabled and failure (32 bits each).
	auditStatusPid = 12
)

// AuditDaemonPid returns the pid of the process the kernel sends audit
// records to (the audit daemon, which registered itself with AUDIT_SET
// through a NETLINK_AUDIT socket), 0 if none.
func AuditDaemonPid() (uint32, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		return 0, fmt.Errorf("open audit socket: %w", err)
	}
	defer unix.Close(fd)
	req := Encode(nlmsgHeader{Len: nlmsgHeaderLen, Type: auditGet, Flags: unix.NLM_F_REQUEST, Seq: 1})
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("ask the audit status: %w", err)
	}
	buf := make([]byte, 4096)
	d, err := recvNl(fd, buf)
	if err != nil {
		return 0, fmt.Errorf("read the audit status: %w", err)
	}
	return ParseAuditStatus(d)
}

// ParseAuditStatus returns the audit daemon's pid from the kernel's
// answer to AUDIT_GET: one netlink message holding a struct audit_status,
// or an NLMSG_ERROR, returned as its errno.
func ParseAuditStatus(b []byte) (uint32, error) {
	h, body, _, err := nextNlMsg(b)
	if err != nil {
		return 0, err
	}
	switch h.Type {
	case unix.NLMSG_ERROR:
		if len(body) < 4 {
			return 0, fmt.Errorf("%w: error message of %d bytes", ErrNetlink, len(body))
		}
		if errno := int32(binary.NativeEndian.Uint32(body)); errno < 0 {
			return 0, unix.Errno(-errno)
		}
		return 0, fmt.Errorf("%w: an acknowledgement, not the audit status", ErrNetlink)
	case auditGet:
	default:
		return 0, fmt.Errorf("%w: message type %d", ErrNetlink, h.Type)
	}
	if len(body) < auditStatusPid+4 {
		return 0, fmt.Errorf("%w: audit status of %d bytes", ErrNetlink, len(body))
	}
	return binary.NativeEndian.Uint32(body[auditStatusPid:]), nil
}
