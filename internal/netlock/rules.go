package netlock

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Conn is one TCP connection, seen from the checkpointed side.
type Conn struct{ Local, Remote netip.AddrPort }

// setKeys is one set of a lock's table: the packets of a family whose
// source address, source port, destination address and destination port,
// concatenated, are one of keys are dropped.
type setKeys struct {
	family byte // NFPROTO_IPV4 or NFPROTO_IPV6
	keys   [][]byte
}

// setMax is the number of elements a NEWSETELEM message carries: the
// elements are one netlink attribute, whose length is 16 bits, and an IPv6
// element takes 52 bytes.
const setMax = 1000

// keys is the set keys of conns: each connection's two directions, IPv4
// (IPv4-mapped IPv6 addresses included, as those sockets send IPv4) and
// IPv6 apart, each key once, sorted.
func keys(conns []Conn) ([]setKeys, error) {
	v4 := setKeys{family: unix.NFPROTO_IPV4}
	v6 := setKeys{family: unix.NFPROTO_IPV6}
	for _, c := range conns {
		l := netip.AddrPortFrom(c.Local.Addr().Unmap().WithZone(""), c.Local.Port())
		r := netip.AddrPortFrom(c.Remote.Addr().Unmap().WithZone(""), c.Remote.Port())
		if !l.Addr().IsValid() || !r.Addr().IsValid() || l.Port() == 0 || r.Port() == 0 || l.Addr().Is4() != r.Addr().Is4() {
			return nil, fmt.Errorf("%w: %v -> %v", ErrBadConn, c.Local, c.Remote)
		}
		s := &v6
		if l.Addr().Is4() {
			s = &v4
		}
		s.keys = append(s.keys, key(l, r), key(r, l))
	}
	for _, s := range []*setKeys{&v4, &v6} {
		slices.SortFunc(s.keys, bytes.Compare)
		s.keys = slices.CompactFunc(s.keys, bytes.Equal)
	}
	return []setKeys{v4, v6}, nil
}

// key is the set key of the packets from src to dst: each field padded to
// the 4-byte registers the rule loads them into.
func key(src, dst netip.AddrPort) []byte {
	var k []byte
	for _, ap := range []netip.AddrPort{src, dst} {
		k = append(k, ap.Addr().AsSlice()...)
		k = binary.BigEndian.AppendUint16(k, ap.Port())
		k = append(k, 0, 0)
	}
	return k
}

// addRules queues, in t, the chains on the input and output hooks and, per
// family, the set of sets and the rule dropping its packets.
func addRules(c *nftables.Conn, t *nftables.Table, sets []setKeys) error {
	// Before conntrack, so that a dropped packet leaves no trace there.
	var chains []*nftables.Chain
	for _, h := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"input", nftables.ChainHookInput}, {"output", nftables.ChainHookOutput}} {
		chains = append(chains, c.AddChain(&nftables.Chain{
			Name:     h.name,
			Table:    t,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  h.hook,
			Priority: nftables.ChainPriorityRaw,
		}))
	}
	for _, s := range sets {
		if err := addSet(c, t, chains, s); err != nil {
			return err
		}
	}
	return nil
}

// addSet queues the set of s and a rule in each chain dropping its
// packets.
func addSet(c *nftables.Conn, t *nftables.Table, chains []*nftables.Chain, s setKeys) error {
	addr, saddr, daddr := nftables.TypeIPAddr, uint32(12), uint32(16) // struct iphdr
	name := "conns4"
	if s.family == unix.NFPROTO_IPV6 {
		addr, saddr, daddr = nftables.TypeIP6Addr, 8, 24 // struct ipv6hdr
		name = "conns6"
	}
	set := &nftables.Set{
		Table:         t,
		Name:          name,
		KeyType:       nftables.MustConcatSetType(addr, nftables.TypeInetService, addr, nftables.TypeInetService),
		Concatenation: true,
	}
	if err := c.AddSet(set, nil); err != nil {
		return fmt.Errorf("add set %s: %w", name, err)
	}
	for ks := range slices.Chunk(s.keys, setMax) {
		elems := make([]nftables.SetElement, len(ks))
		for i, k := range ks {
			elems[i].Key = k
		}
		if err := c.SetAddElements(set, elems); err != nil {
			return fmt.Errorf("add to set %s: %w", name, err)
		}
	}
	// The fields load into consecutive 32-bit registers from NFT_REG32_00,
	// a port padded to 4 bytes, as the key lays them out.
	alen := addr.Bytes / 4
	reg := uint32(unix.NFT_REG32_00)
	match := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: unix.NFT_REG_1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{s.family}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: saddr, Len: addr.Bytes},
		&expr.Payload{DestRegister: reg + alen, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Payload{DestRegister: reg + alen + 1, Base: expr.PayloadBaseNetworkHeader, Offset: daddr, Len: addr.Bytes},
		&expr.Payload{DestRegister: reg + 2*alen + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: reg, SetName: set.Name, SetID: set.ID},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
	for _, ch := range chains {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: match})
	}
	return nil
}
