package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// The layout of struct group_filter (include/uapi/linux/in.h) with one
// source: the interface index, padded to 8, the group as a struct
// __kernel_sockaddr_storage (128 bytes), the filter mode, the number of
// sources, then the sources.
const (
	groupFilterGroup  = 8
	groupFilterFmode  = groupFilterGroup + 128
	groupFilterNumsrc = groupFilterFmode + 4
	groupFilterSize   = groupFilterNumsrc + 4 + 128
)

// McastFilter reads the membership of socket fd in multicast group on
// interface ifindex (MCAST_MSFILTER, at level unix.SOL_IP or SOL_IPV6):
// its filter mode (unix.MCAST_INCLUDE or MCAST_EXCLUDE) and how many
// sources it filters; member is false if the socket has not joined the
// group there. A plain join excludes no source.
func McastFilter(fd, level, ifindex int, group netip.Addr) (mode, sources uint32, member bool, err error) {
	buf := make([]byte, groupFilterSize)
	binary.NativeEndian.PutUint32(buf, uint32(ifindex))
	sa := buf[groupFilterGroup:]
	if group.Is4() {
		binary.NativeEndian.PutUint16(sa, unix.AF_INET)
		a := group.As4()
		copy(sa[4:], a[:])
	} else {
		binary.NativeEndian.PutUint16(sa, unix.AF_INET6)
		a := group.As16()
		copy(sa[8:], a[:])
	}
	switch _, err := GetsockoptBytes(fd, level, unix.MCAST_MSFILTER, buf); {
	case errors.Is(err, unix.EADDRNOTAVAIL):
		return 0, 0, false, nil
	case err != nil:
		return 0, 0, false, fmt.Errorf("read membership of group %v on interface %d: %w", group, ifindex, err)
	}
	return binary.NativeEndian.Uint32(buf[groupFilterFmode:]), binary.NativeEndian.Uint32(buf[groupFilterNumsrc:]), true, nil
}
