package proc

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
)

// McastGroup is a multicast group joined on a network interface, by some
// socket of the network namespace: /proc/net/igmp and igmp6 list them per
// interface, not per socket.
type McastGroup struct {
	Ifindex int
	Group   netip.Addr
}

// ParseIGMP parses /proc/net/igmp: per interface a line "INDEX\tNAME :
// COUNT QUERIER", then a line per group, indented, whose first field is
// the group's address as the kernel holds it (network order), printed as
// a native-endian hexadecimal number.
func ParseIGMP(b []byte) ([]McastGroup, error) {
	var groups []McastGroup
	ifindex := -1
	first := true
	err := eachLine(b, func(line []byte) error {
		if first {
			first = false
			return nil // the header
		}
		fields := bytes.Fields(line)
		if len(fields) == 0 {
			return fmt.Errorf("%w: empty line", ErrSyntax)
		}
		if line[0] != '\t' && line[0] != ' ' {
			n, err := parseNum[int](string(fields[0]), 10)
			if err != nil || n <= 0 {
				return fmt.Errorf("%w: interface index %q", ErrSyntax, fields[0])
			}
			ifindex = n
			return nil
		}
		if ifindex < 0 {
			return fmt.Errorf("%w: a group before any interface", ErrSyntax)
		}
		v, err := parseNum[uint32](string(fields[0]), 16)
		if err != nil || len(fields[0]) != 8 {
			return fmt.Errorf("%w: group %q", ErrSyntax, fields[0])
		}
		var a [4]byte
		binary.NativeEndian.PutUint32(a[:], v)
		groups = append(groups, McastGroup{ifindex, netip.AddrFrom4(a)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("parse igmp: %w", err)
	}
	return groups, nil
}

// ParseIGMP6 parses /proc/net/igmp6: a line per group, "INDEX NAME GROUP
// USERS FLAGS TIMER", the group in 32 hexadecimal digits.
func ParseIGMP6(b []byte) ([]McastGroup, error) {
	var groups []McastGroup
	err := eachLine(b, func(line []byte) error {
		fields := bytes.Fields(line)
		if len(fields) < 3 {
			return fmt.Errorf("%w: %d fields, want at least 3", ErrSyntax, len(fields))
		}
		n, err := parseNum[int](string(fields[0]), 10)
		if err != nil || n <= 0 {
			return fmt.Errorf("%w: interface index %q", ErrSyntax, fields[0])
		}
		var a [16]byte
		if len(fields[2]) != 32 {
			return fmt.Errorf("%w: group %q", ErrSyntax, fields[2])
		}
		if _, err := hex.Decode(a[:], fields[2]); err != nil {
			return fmt.Errorf("%w: group %q", ErrSyntax, fields[2])
		}
		groups = append(groups, McastGroup{n, netip.AddrFrom16(a)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("parse igmp6: %w", err)
	}
	return groups, nil
}

// ReadMcastGroups reads the multicast groups joined in cryo's network
// namespace, IPv4 and IPv6. A kernel without IPv6 has no igmp6.
func ReadMcastGroups() ([]McastGroup, error) {
	b, err := os.ReadFile("/proc/net/igmp")
	if err != nil {
		return nil, fmt.Errorf("read multicast groups: %w", err)
	}
	groups, err := ParseIGMP(b)
	if err != nil {
		return nil, err
	}
	b, err = os.ReadFile("/proc/net/igmp6")
	if os.IsNotExist(err) {
		return groups, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read multicast groups: %w", err)
	}
	g6, err := ParseIGMP6(b)
	if err != nil {
		return nil, err
	}
	return append(groups, g6...), nil
}
