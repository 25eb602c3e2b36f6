// Package netlock owns the network lock of a checkpoint: while its TCP
// connections are dumped and until they are restored, nftables rules drop
// every packet of them, both ways, so that the peers see neither a reset
// nor a FIN and retransmit once the lock goes. It talks to nf_tables over
// netlink (no nft or iptables command), one inet table per lock, named
// "cryo-" + id so that a later cryo can list and remove it.
package netlock

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

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
	nft   *kernel.NftSocket // owns the table; nil once kept or released
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
// made in a batch of its own before the one with the rules, so that an
// error of that batch is the table's (an id taken, a kernel without
// NFT_TABLE_F_OWNER); the empty table drops nothing meanwhile.
func Take(id string, conns []Conn) (*Lock, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	sets, err := keys(conns)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", id, err)
	}
	s, err := kernel.OpenNftSocket()
	if err != nil {
		return nil, fmt.Errorf("lock %s: open netlink: %w", id, err)
	}
	if err := s.SetBuffers(buffers(sets)); err != nil {
		s.Close()
		return nil, fmt.Errorf("lock %s: %w", id, err)
	}
	l := &Lock{id: id, sets: sets, nft: s}
	if err := l.newOwnedTable(); err != nil {
		s.Close()
		return nil, fmt.Errorf("lock %s: %w", id, err)
	}
	b := s.Batch(batchSize(sets))
	addRules(b, tablePrefix+id, sets)
	if err := s.Commit(b); err != nil {
		// Closing the socket removes the owned table.
		s.Close()
		return nil, fmt.Errorf("lock %s: add rules: %w", id, err)
	}
	return l, nil
}

// newOwnedTable makes l's table owned by l's socket.
func (l *Lock) newOwnedTable() error {
	b := l.nft.Batch(0)
	addTable(b, l.id, kernel.NftTableFOwner)
	err := l.nft.Commit(b)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return ErrExists
	case errors.Is(err, os.ErrPermission) && held(l.id):
		// The kernel refuses to look up a table owned by another
		// socket.
		return ErrHeld
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("add table owned by its socket (NFT_TABLE_F_OWNER, Linux >= 5.12): %w", err)
	}
	return fmt.Errorf("add table: %w", err)
}

// addTable queues the making of the table of id, with flags
// (NFT_TABLE_F_*).
func addTable(b *kernel.NftBatch, id string, flags uint32) {
	b.Add(unix.NFT_MSG_NEWTABLE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, unix.NFPROTO_INET)
	b.AttrString(unix.NFTA_TABLE_NAME, tablePrefix+id)
	b.AttrBE32(unix.NFTA_TABLE_FLAGS, flags)
}

// delTable queues the deletion of the table of id.
func delTable(b *kernel.NftBatch, id string) {
	b.Add(unix.NFT_MSG_DELTABLE, 0, unix.NFPROTO_INET)
	b.AttrString(unix.NFTA_TABLE_NAME, tablePrefix+id)
}

// buffers is a bound on the sizes of the batch of the rules of sets and of
// the acknowledgements it brings back, one a message, each in a buffer of
// its own (768 bytes on x86_64).
func buffers(sets []setKeys) (send, receive int) {
	msgs := 16 // tables, chains, sets, rules
	for _, s := range sets {
		msgs += (len(s.keys) + setMax - 1) / setMax
	}
	return batchSize(sets), msgs * 2048
}

// batchSize is a bound on the size of the batch of the rules of sets: 10,000
// IPv6 connections make one of 1 MiB, beyond the default socket buffer of
// 208 KiB and often beyond wmem_max, which SO_SNDBUFFORCE ignores.
func batchSize(sets []setKeys) int {
	n := 1 << 16 // tables, chains, sets, rules, message headers
	for _, s := range sets {
		for _, k := range s.keys {
			n += len(k) + 12 // the element's three attribute headers
		}
	}
	return n
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
	b := l.nft.Batch(batchSize(l.sets))
	delTable(b, l.id)
	addTable(b, l.id, 0)
	addRules(b, tablePrefix+l.id, l.sets)
	if err := l.nft.Commit(b); err != nil {
		return fmt.Errorf("keep lock %s: %w", l.id, err)
	}
	l.state = kept
	l.nft.Close()
	l.nft = nil
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
	b := l.nft.Batch(0)
	delTable(b, l.id)
	err := l.nft.Commit(b)
	// Closing the socket removes the owned table even when the delete
	// failed.
	if cerr := l.nft.Close(); err == nil {
		err = cerr
	}
	l.nft = nil
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
	s, err := kernel.OpenNftSocket()
	if err != nil {
		return fmt.Errorf("unlock %s: open netlink: %w", id, err)
	}
	defer s.Close()
	b := s.Batch(0)
	delTable(b, id)
	err = s.Commit(b)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, os.ErrPermission) && held(id):
		return fmt.Errorf("unlock %s: %w", id, ErrHeld)
	}
	return fmt.Errorf("unlock %s: %w", id, err)
}

// held reports whether the table of id is owned by a socket.
func held(id string) bool {
	ts, err := kernel.NftTables(unix.NFPROTO_INET)
	if err != nil {
		return false
	}
	i := slices.IndexFunc(ts, func(t kernel.NftTable) bool { return t.Name == tablePrefix+id })
	return i >= 0 && isOwned(ts[i])
}

// isOwned reports whether t is owned by a socket.
func isOwned(t kernel.NftTable) bool { return t.Flags&kernel.NftTableFOwner != 0 }

// Locks lists the ids of the kept locks on this host (in this network
// namespace), sorted.
func Locks() ([]string, error) {
	ts, err := kernel.NftTables(unix.NFPROTO_INET)
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	var ids []string
	for _, t := range ts {
		if id, ok := strings.CutPrefix(t.Name, tablePrefix); ok && !isOwned(t) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// checkID refuses an id that cannot name a table.
func checkID(id string) error {
	if id == "" || len(tablePrefix+id) >= unix.NFT_TABLE_MAXNAMELEN || strings.ContainsRune(id, 0) {
		return fmt.Errorf("%w %q", ErrBadID, id)
	}
	return nil
}
