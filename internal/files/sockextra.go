package files

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// What a socket holds that CRIU's entries have no field for goes into
// cryo's own cryo-sk-extra.img (image.SockExtra): a unix or UDP socket's
// peek offset (SO_PEEK_OFF), and the multicast groups a UDP socket joined.

// sockExtraTable gathers a dump's socket extras, by entry id.
type sockExtraTable struct {
	extras []image.SockExtra
	// mcastGroups are the multicast groups joined in the network
	// namespace, read for the first UDP socket (mcastRead).
	mcastGroups []proc.McastGroup
	mcastRead   bool
}

// extra returns the extras of socket entry id, made on first use.
func (t *sockExtraTable) extra(id uint32) *image.SockExtra {
	i := slices.IndexFunc(t.extras, func(x image.SockExtra) bool { return x.ID == id })
	if i < 0 {
		t.extras = append(t.extras, image.SockExtra{ID: id, PeekOff: -1})
		i = len(t.extras) - 1
	}
	return &t.extras[i]
}

func (t *sockExtraTable) write(dir *image.Dir) error { return dir.WriteSockExtras(t.extras) }

// dumpPeekOff records the peek offset of socket fd, entry id, if it has
// one, and returns it, for the caller to set back after its own peeks.
func (t *sockExtraTable) dumpPeekOff(fd int, id uint32) (int, error) {
	off, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF)
	if err != nil {
		return 0, fmt.Errorf("read peek offset: %w", err)
	}
	if off != -1 {
		t.extra(id).PeekOff = int32(off)
	}
	return off, nil
}

// dumpMemberships records the multicast groups UDP socket fd, entry id,
// joined. Which groups a socket joined the kernel lists nowhere, but it
// answers for each group that some socket joined (/proc/net/igmp and
// igmp6). A membership that filters its sources is refused.
func (t *sockExtraTable) dumpMemberships(fd int, id, family uint32, local netip.AddrPort) error {
	if !t.mcastRead {
		groups, err := proc.ReadMcastGroups()
		if err != nil {
			return err
		}
		t.mcastGroups, t.mcastRead = groups, true
	}
	for _, g := range t.mcastGroups {
		level := unix.SOL_IP
		switch {
		case g.Group.Is4() && family != unix.AF_INET, g.Group.Is6() && family != unix.AF_INET6:
			continue
		case g.Group.Is6():
			level = unix.SOL_IPV6
		}
		mode, sources, member, err := kernel.McastFilter(fd, level, g.Ifindex, g.Group)
		switch {
		case err != nil:
			return fmt.Errorf("UDP socket %v: %w", local, err)
		case !member:
			continue
		case mode != unix.MCAST_EXCLUDE || sources != 0:
			return fmt.Errorf("%w: UDP socket %v joined multicast group %v on interface %d for some sources only (%d, mode %d): a checkpoint cannot hold source filters", ErrUnsupported, local, g.Group, g.Ifindex, sources, mode)
		}
		x := t.extra(id)
		x.Groups = append(x.Groups, image.McastGroup{Ifindex: uint32(g.Ifindex), Group: g.Group})
	}
	return nil
}

// sockExtraSet are the socket extras of a checkpoint, by entry id.
type sockExtraSet struct {
	sockExtras map[uint32]image.SockExtra
}

func (s *Set) loadSockExtras() error {
	extras, err := s.dir.ReadSockExtras()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	s.sockExtras = map[uint32]image.SockExtra{}
	for _, x := range extras {
		f := s.Files[x.ID]
		switch {
		case f == nil || f.Usk == nil && f.Isk == nil:
			return imageErr("%s: file %d is not a socket entry", image.SockExtras.FileName(0), x.ID)
		case len(x.Groups) > 0 && f.Isk.GetProto() != unix.IPPROTO_UDP:
			return imageErr("%s: file %d joined multicast groups, but is no UDP socket", image.SockExtras.FileName(0), x.ID)
		}
		if _, dup := s.sockExtras[x.ID]; dup {
			return imageErr("%s: file %d twice", image.SockExtras.FileName(0), x.ID)
		}
		s.sockExtras[x.ID] = x
	}
	return nil
}

// joinGroups makes socket fd, entry id, join the multicast groups it had.
func (s *Set) joinGroups(fd int, id uint32) error {
	for _, g := range s.sockExtras[id].Groups {
		var err error
		if g.Group.Is4() {
			err = unix.SetsockoptIPMreqn(fd, unix.SOL_IP, unix.IP_ADD_MEMBERSHIP, &unix.IPMreqn{Multiaddr: g.Group.As4(), Ifindex: int32(g.Ifindex)})
		} else {
			err = unix.SetsockoptIPv6Mreq(fd, unix.SOL_IPV6, unix.IPV6_JOIN_GROUP, &unix.IPv6Mreq{Multiaddr: g.Group.As16(), Interface: g.Ifindex})
		}
		if err != nil {
			return fmt.Errorf("join multicast group %v on interface %d: %w", g.Group, g.Ifindex, err)
		}
	}
	return nil
}

// setPeekOff gives socket fd, entry id, the peek offset it had, once its
// queue is back.
func (s *Set) setPeekOff(fd int, id uint32) error {
	x, ok := s.sockExtras[id]
	if !ok || x.PeekOff == -1 {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, int(x.PeekOff)); err != nil {
		return fmt.Errorf("set peek offset %d: %w", x.PeekOff, err)
	}
	return nil
}
