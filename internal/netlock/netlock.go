// Package netlock owns the network lock of a checkpoint: while its TCP
// connections are dumped and until they are restored, nftables rules drop
// every packet of them, both ways, so that the peers see neither a reset
// nor a FIN and retransmit once the lock goes. It talks to nf_tables over
// netlink (no nft or iptables command), one inet table per lock, named
// "cryo-" + id so that a later cryo can list and remove it.
package netlock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// tablePrefix begins the name of every table of a lock; the id follows.
const tablePrefix = "cryo-"

// Lock is a network lock in place. Until Keep it lives in a table owned by
// its netlink socket, which the kernel removes when the socket closes, so
// that a cryo that dies leaves no lock behind. A Lock is used by one
// goroutine at a time.
type Lock struct {
	id    string
	sets  []setKeys
	conn  *nftables.Conn // nil once kept or released
	nl    *netlink.Conn  // conn's socket, which owns the table
	state state
}

type state int

const (
	owned state = iota
	kept
	released
)

// Take drops every packet of conns, both directions (input and output hooks,
// IPv4 and IPv6), in a table of its own named from id, owned by the calling
// process's netlink socket (NFT_TABLE_F_OWNER) so that it vanishes if the
// process dies before Keep or Release. A connection given from both ends
// (loopback, both in the checkpoint) is matched once.
//
// The function is Take rather than Lock, as the type is Lock. The table is
// made in a batch of its own before the one with the rules: nftables v0.3.0
// always sends table flags 0 and the owner flag cannot be set on an
// existing table; the empty table drops nothing meanwhile.
func Take(id string, conns []Conn) (*Lock, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	sets, err := keys(conns)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", id, err)
	}
	var nl *netlink.Conn
	c, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(func(s *netlink.Conn) error {
		nl = s
		if err := s.SetOption(netlink.CapAcknowledge, true); err != nil {
			return err
		}
		return setBuffers(s, sets)
	}))
	if err != nil {
		return nil, fmt.Errorf("lock %s: open netlink: %w", id, err)
	}
	l := &Lock{id: id, sets: sets, conn: c, nl: nl}
	if err := l.newOwnedTable(); err != nil {
		c.CloseLasting()
		return nil, fmt.Errorf("lock %s: %w", id, err)
	}
	if err := addRules(c, table(id), sets); err != nil {
		c.CloseLasting()
		return nil, fmt.Errorf("lock %s: %w", id, err)
	}
	if err := c.Flush(); err != nil {
		// Closing the socket removes the owned table.
		c.CloseLasting()
		return nil, fmt.Errorf("lock %s: add rules: %w", id, err)
	}
	return l, nil
}

// newOwnedTable makes l's table owned by l's socket.
func (l *Lock) newOwnedTable() error {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: []byte(tablePrefix + l.id + "\x00")},
		{Type: unix.NFTA_TABLE_FLAGS, Data: binary.BigEndian.AppendUint32(nil, kernel.NftTableFOwner)},
	})
	if err != nil {
		return fmt.Errorf("encode table: %w", err)
	}
	msgs := []netlink.Message{
		batchMessage(unix.NFNL_MSG_BATCH_BEGIN),
		{
			Header: netlink.Header{
				Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE),
				Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl,
			},
			Data: append(nfgenmsg(unix.NFPROTO_INET, 0), attrs...),
		},
		batchMessage(unix.NFNL_MSG_BATCH_END),
	}
	if _, err := l.nl.SendMessages(msgs); err != nil {
		return fmt.Errorf("send table: %w", err)
	}
	if _, err := l.nl.Receive(); err != nil {
		switch {
		case errors.Is(err, unix.EEXIST):
			return ErrExists
		case errors.Is(err, os.ErrPermission) && held(l.conn, l.id):
			// The kernel refuses to look up a table owned by another
			// socket.
			return ErrHeld
		case errors.Is(err, unix.EOPNOTSUPP):
			return fmt.Errorf("add table owned by its socket (NFT_TABLE_F_OWNER, Linux >= 5.12): %w", err)
		}
		return fmt.Errorf("add table: %w", err)
	}
	return nil
}

// buffers is a bound on the sizes of the batch of the rules of sets and of
// the acknowledgements it brings back, one a message, each in a buffer of
// its own (768 bytes on x86_64).
func buffers(sets []setKeys) (send, receive int) {
	send, msgs := 1<<16, 16 // tables, chains, sets, rules, message headers
	for _, s := range sets {
		for _, k := range s.keys {
			send += len(k) + 12 // the element's three attribute headers
		}
		msgs += (len(s.keys) + setMax - 1) / setMax
	}
	return send, msgs * 2048
}

// setBuffers makes s's buffers hold the batch of the rules of sets and its
// acknowledgements: a batch goes in one sendmsg, and 10,000 IPv6
// connections make one of 1 MiB, beyond the default 208 KiB and often
// beyond wmem_max, which SO_SNDBUFFORCE and SO_RCVBUFFORCE (root) ignore.
func setBuffers(s *netlink.Conn, sets []setKeys) error {
	send, receive := buffers(sets)
	raw, err := s.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = errors.Join(
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, send),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, receive))
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set socket buffers to %d and %d bytes: %w", send, receive, serr)
	}
	return nil
}

// batchMessage begins or ends a batch of nf_tables messages.
func batchMessage(typ int) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request},
		Data:   nfgenmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
	}
}

// nfgenmsg is struct nfgenmsg (include/uapi/linux/netfilter/nfnetlink.h):
// family, version, and the resource id in network order.
func nfgenmsg(family byte, resID uint16) []byte {
	return []byte{family, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
}

// Keep turns the lock into one that outlives the process, so that a dump
// that killed its target keeps it until the restore: in one batch, the
// owned table is deleted and a table of the same name and rules, owned by
// no one, is made. The batch commits at once, so no packet passes between
// the two. Keep closes the socket, which owns nothing any more. A Keep that
// fails leaves the lock held as it was.
func (l *Lock) Keep() error {
	if l.state != owned {
		return fmt.Errorf("keep lock %s: not held", l.id)
	}
	t := table(l.id)
	l.conn.DelTable(t)
	l.conn.AddTable(t)
	if err := addRules(l.conn, t, l.sets); err != nil {
		return fmt.Errorf("keep lock %s: %w", l.id, err)
	}
	if err := l.conn.Flush(); err != nil {
		return fmt.Errorf("keep lock %s: %w", l.id, err)
	}
	l.state = kept
	l.conn.CloseLasting()
	l.conn, l.nl = nil, nil
	return nil
}

// Release removes the lock, kept or not, and closes its socket.
func (l *Lock) Release() error {
	switch l.state {
	case released:
		return nil
	case kept:
		l.state = released
		return Unlock(l.id)
	}
	l.state = released
	l.conn.DelTable(table(l.id))
	err := l.conn.Flush()
	// Closing the socket removes the owned table even when the delete
	// failed.
	if cerr := l.conn.CloseLasting(); err == nil {
		err = cerr
	}
	l.conn, l.nl = nil, nil
	if err != nil {
		return fmt.Errorf("release lock %s: %w", l.id, err)
	}
	return nil
}

// Unlock removes the kept lock of that id, as the restore does once the
// connections are back. No such lock is not an error; one held by a running
// process is ErrHeld.
func Unlock(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("unlock %s: open netlink: %w", id, err)
	}
	c.DelTable(table(id))
	err = c.Flush()
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, os.ErrPermission) && held(c, id):
		return fmt.Errorf("unlock %s: %w", id, ErrHeld)
	}
	return fmt.Errorf("unlock %s: %w", id, err)
}

// held reports whether the table of id is owned by a socket.
func held(c *nftables.Conn, id string) bool {
	t, err := c.ListTableOfFamily(tablePrefix+id, nftables.TableFamilyINet)
	return err == nil && isOwned(t)
}

// isOwned reports whether t is owned by a socket. nftables v0.3.0 decodes
// NFTA_TABLE_FLAGS in host order; the kernel sends it in network order.
func isOwned(t *nftables.Table) bool {
	flags := binary.BigEndian.Uint32(binary.NativeEndian.AppendUint32(nil, t.Flags))
	return flags&kernel.NftTableFOwner != 0
}

// Locks lists the ids of the kept locks on this host (in this network
// namespace), sorted.
func Locks() ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("list locks: open netlink: %w", err)
	}
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	var ids []string
	for _, t := range ts {
		if id, ok := strings.CutPrefix(t.Name, tablePrefix); ok && !isOwned(t) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// checkID refuses an id that cannot name a table.
func checkID(id string) error {
	if id == "" || len(tablePrefix+id) >= unix.NFT_TABLE_MAXNAMELEN || strings.ContainsRune(id, 0) {
		return fmt.Errorf("%w %q", ErrBadID, id)
	}
	return nil
}

// table is the table of the lock of id.
func table(id string) *nftables.Table {
	return &nftables.Table{Name: tablePrefix + id, Family: nftables.TableFamilyINet}
}
