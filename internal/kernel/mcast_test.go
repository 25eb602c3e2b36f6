package kernel

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMcastFilter joins a group on the loopback interface, IPv4 and
// IPv6, and reads the memberships back.
func TestMcastFilter(t *testing.T) {
	for _, tc := range []struct {
		family, level int
		group         string
	}{
		{unix.AF_INET, unix.SOL_IP, "239.1.2.3"},
		{unix.AF_INET6, unix.SOL_IPV6, "ff15::1234"},
	} {
		fd, err := unix.Socket(tc.family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		group := netip.MustParseAddr(tc.group)
		if _, _, member, err := McastFilter(fd, tc.level, 1, group); err != nil || member {
			t.Fatalf("%v before the join: member %v, %v", group, member, err)
		}
		if tc.family == unix.AF_INET {
			err = unix.SetsockoptIPMreqn(fd, unix.SOL_IP, unix.IP_ADD_MEMBERSHIP, &unix.IPMreqn{Multiaddr: group.As4(), Ifindex: 1})
		} else {
			err = unix.SetsockoptIPv6Mreq(fd, unix.SOL_IPV6, unix.IPV6_JOIN_GROUP, &unix.IPv6Mreq{Multiaddr: group.As16(), Interface: 1})
		}
		if err != nil {
			t.Skipf("join %v on lo: %v", group, err)
		}
		mode, sources, member, err := McastFilter(fd, tc.level, 1, group)
		if err != nil || !member || mode != unix.MCAST_EXCLUDE || sources != 0 {
			t.Errorf("%v: mode %d, %d sources, member %v, %v; want a member excluding none", group, mode, sources, member, err)
		}
		if _, _, member, err := McastFilter(fd, tc.level, 1, netip.MustParseAddr(map[int]string{unix.AF_INET: "239.9.9.9", unix.AF_INET6: "ff15::9"}[tc.family])); err != nil || member {
			t.Errorf("another group: member %v, %v", member, err)
		}
	}
}
