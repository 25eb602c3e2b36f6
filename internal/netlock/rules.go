package netlock

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
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

// chains are the chains of a lock's table, on the input and output hooks.
var chains = []struct {
	name string
	hook uint32
}{{"input", unix.NF_INET_LOCAL_IN}, {"output", unix.NF_INET_LOCAL_OUT}}

// addRules queues, in table, the chains and, per family, the set of sets
// and the rule dropping its packets in each chain.
func addRules(b *kernel.NftBatch, table string, sets []setKeys) {
	// Before conntrack, so that a dropped packet leaves no trace there.
	prio := int32(kernel.NfIPPriRaw)
	for _, c := range chains {
		b.Add(unix.NFT_MSG_NEWCHAIN, unix.NLM_F_CREATE, unix.NFPROTO_INET)
		b.AttrString(unix.NFTA_CHAIN_TABLE, table)
		b.AttrString(unix.NFTA_CHAIN_NAME, c.name)
		b.Nest(unix.NFTA_CHAIN_HOOK)
		b.AttrBE32(unix.NFTA_HOOK_HOOKNUM, c.hook)
		b.AttrBE32(unix.NFTA_HOOK_PRIORITY, uint32(prio))
		b.EndNest()
		b.AttrString(unix.NFTA_CHAIN_TYPE, "filter")
	}
	for _, s := range sets {
		addSet(b, table, s)
	}
}

// The types nft shows the fields of a key as (TYPE_IPADDR, TYPE_IP6ADDR
// and TYPE_INET_SERVICE of nftables' include/datatype.h), which the kernel
// keeps for it: a concatenation's is its fields', 6 bits each, the first
// highest.
const (
	typeIPAddr      = 7
	typeIP6Addr     = 8
	typeInetService = 13
)

// addSet queues the set of s, its elements, and a rule in each chain
// dropping its packets.
func addSet(b *kernel.NftBatch, table string, s setKeys) {
	addr, addrType, saddr, daddr := uint32(4), uint32(typeIPAddr), uint32(12), uint32(16) // struct iphdr
	name := "conns4"
	if s.family == unix.NFPROTO_IPV6 {
		addr, addrType, saddr, daddr = 16, typeIP6Addr, 8, 24 // struct ipv6hdr
		name = "conns6"
	}
	b.Add(unix.NFT_MSG_NEWSET, unix.NLM_F_CREATE, unix.NFPROTO_INET)
	b.AttrString(unix.NFTA_SET_TABLE, table)
	b.AttrString(unix.NFTA_SET_NAME, name)
	// The kernel requires an id, by which the later messages of the
	// batch could name the set; they name it by its name.
	b.AttrBE32(unix.NFTA_SET_ID, uint32(s.family))
	b.AttrBE32(unix.NFTA_SET_FLAGS, kernel.NftSetConcat)
	b.AttrBE32(unix.NFTA_SET_KEY_TYPE, ((addrType<<6|typeInetService)<<6|addrType)<<6|typeInetService)
	b.AttrBE32(unix.NFTA_SET_KEY_LEN, 2*addr+8) // each port padded to 4 bytes
	b.Nest(unix.NFTA_SET_DESC)
	b.Nest(kernel.NftaSetDescConcat)
	for _, l := range []uint32{addr, 2, addr, 2} {
		b.Nest(unix.NFTA_LIST_ELEM)
		b.AttrBE32(kernel.NftaSetFieldLen, l)
		b.EndNest()
	}
	b.EndNest()
	b.EndNest()
	for ks := range slices.Chunk(s.keys, setMax) {
		b.Add(unix.NFT_MSG_NEWSETELEM, unix.NLM_F_CREATE, unix.NFPROTO_INET)
		b.AttrString(unix.NFTA_SET_ELEM_LIST_TABLE, table)
		b.AttrString(unix.NFTA_SET_ELEM_LIST_SET, name)
		b.Nest(unix.NFTA_SET_ELEM_LIST_ELEMENTS)
		for _, k := range ks {
			b.Nest(unix.NFTA_LIST_ELEM)
			b.Nest(unix.NFTA_SET_ELEM_KEY)
			b.Attr(unix.NFTA_DATA_VALUE, k)
			b.EndNest()
			b.EndNest()
		}
		b.EndNest()
	}
	// The fields load into consecutive 32-bit registers from NFT_REG32_00,
	// a port padded to 4 bytes, as the key lays them out.
	reg, alen := uint32(unix.NFT_REG32_00), addr/4
	for _, c := range chains {
		b.Add(unix.NFT_MSG_NEWRULE, unix.NLM_F_CREATE|unix.NLM_F_APPEND, unix.NFPROTO_INET)
		b.AttrString(unix.NFTA_RULE_TABLE, table)
		b.AttrString(unix.NFTA_RULE_CHAIN, c.name)
		b.Nest(unix.NFTA_RULE_EXPRESSIONS)
		meta(b, unix.NFT_META_NFPROTO)
		cmpEq(b, s.family)
		meta(b, unix.NFT_META_L4PROTO)
		cmpEq(b, unix.IPPROTO_TCP)
		payload(b, reg, unix.NFT_PAYLOAD_NETWORK_HEADER, saddr, addr)
		payload(b, reg+alen, unix.NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2)
		payload(b, reg+alen+1, unix.NFT_PAYLOAD_NETWORK_HEADER, daddr, addr)
		payload(b, reg+2*alen+1, unix.NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)
		expr(b, "lookup")
		b.AttrBE32(unix.NFTA_LOOKUP_SREG, reg)
		b.AttrString(unix.NFTA_LOOKUP_SET, name)
		endExpr(b)
		expr(b, "immediate")
		b.AttrBE32(unix.NFTA_IMMEDIATE_DREG, unix.NFT_REG_VERDICT)
		b.Nest(unix.NFTA_IMMEDIATE_DATA)
		b.Nest(unix.NFTA_DATA_VERDICT)
		b.AttrBE32(unix.NFTA_VERDICT_CODE, kernel.NfDrop)
		b.EndNest()
		b.EndNest()
		endExpr(b)
		b.EndNest()
	}
}

// expr begins an expression of a rule, named name: the attributes
// appended until endExpr are its own.
func expr(b *kernel.NftBatch, name string) {
	b.Nest(unix.NFTA_LIST_ELEM)
	b.AttrString(unix.NFTA_EXPR_NAME, name)
	b.Nest(unix.NFTA_EXPR_DATA)
}

func endExpr(b *kernel.NftBatch) {
	b.EndNest()
	b.EndNest()
}

// meta loads the packet's key (NFT_META_*), one byte, into NFT_REG_1.
func meta(b *kernel.NftBatch, key uint32) {
	expr(b, "meta")
	b.AttrBE32(unix.NFTA_META_KEY, key)
	b.AttrBE32(unix.NFTA_META_DREG, unix.NFT_REG_1)
	endExpr(b)
}

// cmpEq goes on to the next expression if NFT_REG_1 holds v.
func cmpEq(b *kernel.NftBatch, v byte) {
	expr(b, "cmp")
	b.AttrBE32(unix.NFTA_CMP_SREG, unix.NFT_REG_1)
	b.AttrBE32(unix.NFTA_CMP_OP, unix.NFT_CMP_EQ)
	b.Nest(unix.NFTA_CMP_DATA)
	b.Attr(unix.NFTA_DATA_VALUE, []byte{v})
	b.EndNest()
	endExpr(b)
}

// payload loads n bytes at offset of the packet's header base
// (NFT_PAYLOAD_*) into reg and the registers after it.
func payload(b *kernel.NftBatch, reg, base, offset, n uint32) {
	expr(b, "payload")
	b.AttrBE32(unix.NFTA_PAYLOAD_DREG, reg)
	b.AttrBE32(unix.NFTA_PAYLOAD_BASE, base)
	b.AttrBE32(unix.NFTA_PAYLOAD_OFFSET, offset)
	b.AttrBE32(unix.NFTA_PAYLOAD_LEN, n)
	endExpr(b)
}
