package files

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/ptrace"
)

// Descriptors reach the process one way: cryo opens or makes every entry
// (kinds' open), and sends the descriptors over a unix socket pair whose
// other end the process holds, deliverMax in a message (SCM_RIGHTS). The
// process receives a message with one injected recvmsg, the descriptors
// landing at its lowest free numbers, and one batch of injected calls
// (ptrace.Syscalls) moves them to their numbers (dup3), sets their
// close-on-exec flags (fcntl) and closes what is left: two stops per
// deliverMax descriptors, where opening each in the process cost one or
// more. Cryo closing its descriptor of a file drops the POSIX locks its
// own process holds on that file: a program restoring with this package
// must hold none on the files it restores (the cryo command holds none).

// deliverMax is how many descriptors one message carries: the kernel's
// SCM_MAX_FD.
const deliverMax = 253

// Where recvmsg's arguments sit in the scratch buffer: the msghdr, its
// iovec, the one byte of data, the control buffer.
const (
	recvIovAt     = 64
	recvDataAt    = 80
	recvControlAt = 128
)

// channel is the socket pair the descriptors travel through.
type channel struct {
	// fd is cryo's end, -1 if none.
	fd int
	// at is the number of the process's end.
	at uint64
	// pending are the descriptors opened in cryo and not sent yet, in
	// the order of their entries' lowest numbers.
	pending []sending
}

// sending is an entry opened in cryo, to be sent to the process.
type sending struct {
	id uint32
	// fds are the entry's numbers in the table, lowest first.
	fds []*pb.FdinfoEntry
	// fd is cryo's descriptor.
	fd int
}

// openChannel makes the socket pair, the process's end at a number the
// table leaves free (channelNumber).
func (r *Restorer) openChannel() error {
	scratch, err := r.scratch()
	if err != nil {
		return err
	}
	if err := r.sys(unix.SYS_SOCKETPAIR, unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0, scratch); err != nil {
		return fmt.Errorf("make the socket pair descriptors travel through in pid %d: %w", r.pid, err)
	}
	var ends [2]int32
	if err := r.tr.ReadValue(scratch, &ends); err != nil {
		return err
	}
	a, b := uint64(ends[0]), uint64(ends[1])
	if r.channel.fd, err = r.getfd(b); err != nil {
		return err
	}
	to, err := r.channelNumber(a, b)
	if err != nil {
		return err
	}
	calls := []ptrace.Sys{{Nr: unix.SYS_CLOSE, Args: [6]uint64{b}}}
	if a != to {
		calls = append(calls, ptrace.Sys{Nr: unix.SYS_DUP3, Args: [6]uint64{a, to, unix.O_CLOEXEC}}, ptrace.Sys{Nr: unix.SYS_CLOSE, Args: [6]uint64{a}})
	}
	if err := r.tr.Syscalls(r.pid, calls); err != nil {
		return fmt.Errorf("move the socket descriptors travel through to fd %d of pid %d: %w", to, r.pid, err)
	}
	r.channel.at = to
	r.kept[to] = true
	return nil
}

// channelNumber is where the process's end of the socket pair goes, now
// at a (b being the other end, about to close): the highest hole of the
// table, else the number above the table, which the process's
// RLIMIT_NOFILE must allow.
func (r *Restorer) channelNumber(a, b uint64) (uint64, error) {
	top := uint64(0)
	if len(r.set.Fds) > 0 {
		top = uint64(r.set.Fds[len(r.set.Fds)-1].GetFd())
		for m := top; m > 0; m-- {
			if n := m - 1; !r.isTarget(n) && !r.kept[n] {
				return n, nil
			}
		}
		top++
	}
	for r.kept[top] {
		top++
	}
	if top == a || top == b {
		return top, nil // free then, and so below the limit
	}
	var rl unix.Rlimit
	if err := unix.Prlimit(r.pid, unix.RLIMIT_NOFILE, nil, &rl); err != nil {
		return 0, fmt.Errorf("read RLIMIT_NOFILE of pid %d: %w", r.pid, err)
	}
	if top >= rl.Cur {
		return 0, fmt.Errorf("%w: the table of %d descriptors fills every number below the RLIMIT_NOFILE of %d of pid %d: none is left for the socket they travel through", ErrUnsupported, len(r.set.Fds), rl.Cur, r.pid)
	}
	return top, nil
}

// closeChannel closes cryo's end of the socket pair and the descriptors
// not sent.
func (r *Restorer) closeChannel() {
	for _, s := range r.pending {
		unix.Close(s.fd)
	}
	r.pending = nil
	if r.channel.fd >= 0 {
		unix.Close(r.channel.fd)
		r.channel.fd = -1
	}
}

// deliver sends the pending descriptors to the process, deliverMax at a
// time: all of them, else only full batches.
func (r *Restorer) deliver(all bool) error {
	for len(r.pending) >= deliverMax || all && len(r.pending) > 0 {
		n := min(len(r.pending), deliverMax)
		batch := r.pending[:n]
		err := r.send(batch)
		for _, s := range batch {
			unix.Close(s.fd)
		}
		r.pending = r.pending[n:]
		if err != nil {
			return err
		}
	}
	return nil
}

// send gives the process the descriptors of batch at their numbers.
func (r *Restorer) send(batch []sending) error {
	fds := make([]int, len(batch))
	for i, s := range batch {
		fds[i] = s.fd
	}
	first := batch[0].fds[0].GetFd()
	if err := unix.Sendmsg(r.channel.fd, []byte{0}, unix.UnixRights(fds...), nil, 0); err != nil {
		return fmt.Errorf("fd %d: send %d descriptors to pid %d: %w", first, len(batch), r.pid, err)
	}
	got, err := r.receive(len(batch))
	if err != nil {
		return fmt.Errorf("fd %d: receive %d descriptors in pid %d: %w", first, len(batch), r.pid, err)
	}
	calls, whose := r.plan(batch, got)
	if err := r.tr.Syscalls(r.pid, calls); err != nil {
		var se *ptrace.SyscallError
		if errors.As(err, &se) {
			return fmt.Errorf("fd %d of pid %d: place it: %w", whose[se.Index], r.pid, err)
		}
		return err
	}
	return nil
}

// receive has the process receive a message of n descriptors on its end
// of the socket pair, and returns their numbers in order.
func (r *Restorer) receive(n int) ([]uint64, error) {
	scratch, err := r.scratch()
	if err != nil {
		return nil, err
	}
	space := unix.CmsgSpace(4 * n)
	b := make([]byte, recvControlAt+space)
	hdr := kernel.Encode(kernel.Msghdr{Iov: scratch + recvIovAt, IovLen: 1, Control: scratch + recvControlAt, ControlLen: uint64(space)})
	copy(b, hdr)
	copy(b[recvIovAt:], kernel.Encode(kernel.Iovec{Base: scratch + recvDataAt, Len: 1}))
	if err := r.tr.WriteMem(scratch, b); err != nil {
		return nil, err
	}
	if _, err := r.tr.Syscall(r.pid, unix.SYS_RECVMSG, r.channel.at, scratch, 0); err != nil {
		return nil, err
	}
	if err := r.tr.ReadMem(scratch, b); err != nil {
		return nil, err
	}
	var h kernel.Msghdr
	if err := kernel.Decode(b[:len(hdr)], &h); err != nil {
		return nil, err
	}
	var got []int
	if h.ControlLen <= uint64(space) {
		msgs, err := unix.ParseSocketControlMessage(b[recvControlAt : recvControlAt+int(h.ControlLen)])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			fds, err := unix.ParseUnixRights(&m)
			if err != nil {
				return nil, err
			}
			got = append(got, fds...)
		}
	}
	if h.Flags&unix.MSG_CTRUNC != 0 || len(got) != n {
		return nil, fmt.Errorf("%d of %d arrived: the process's RLIMIT_NOFILE leaves no number for the others", len(got), n)
	}
	out := make([]uint64, n)
	for i, fd := range got {
		out[i] = uint64(fd)
	}
	return out, nil
}

// plan returns the calls that give the descriptors of batch, received at
// numbers got, their numbers and flags, and for each call the number of
// the table it is for. A descriptor that lands where it goes stays there;
// one at a number another of the batch goes to moves out of the way
// first, to a number none of the batch goes to; one that lands in a hole
// of the table stays there, plugging it, so that the next batch lands
// elsewhere (closePlugs); the others are closed once placed.
func (r *Restorer) plan(batch []sending, got []uint64) ([]ptrace.Sys, []uint32) {
	var calls []ptrace.Sys
	var whose []uint32
	add := func(fd uint32, nr int, args ...uint64) {
		c := ptrace.Sys{Nr: nr}
		copy(c.Args[:], args)
		calls = append(calls, c)
		whose = append(whose, fd)
	}
	at := slices.Clone(got)
	r.temps = map[uint64]int{}
	ours := map[uint64]bool{}
	for i, s := range batch {
		r.temps[at[i]] = i
		for _, fd := range s.fds {
			ours[uint64(fd.GetFd())] = true
		}
	}
	for i, s := range batch {
		n, stays := at[i], false
		for _, fd := range s.fds {
			to := uint64(fd.GetFd())
			cloexec := fd.GetFlags()&unix.FD_CLOEXEC != 0
			if to == n {
				// Received without close-on-exec.
				stays = true
				if cloexec {
					add(fd.GetFd(), unix.SYS_FCNTL, n, unix.F_SETFD, unix.FD_CLOEXEC)
				}
				r.placed.add(to)
				continue
			}
			if other, ok := r.temps[to]; ok {
				free := r.free(to, func(m uint64) bool { return ours[m] })
				add(fd.GetFd(), unix.SYS_DUP3, to, free, unix.O_CLOEXEC)
				at[other] = free
				delete(r.temps, to)
				r.temps[free] = other
			}
			flags := uint64(0)
			if cloexec {
				flags = unix.O_CLOEXEC
			}
			add(fd.GetFd(), unix.SYS_DUP3, n, to, flags)
			r.placed.add(to)
		}
		delete(r.temps, n)
		switch {
		case stays:
		case !r.isTarget(n) && !r.beyond(n):
			r.plugs[n] = true
		default:
			add(s.fds[0].GetFd(), unix.SYS_CLOSE, n)
		}
	}
	return calls, whose
}

// closePlugs closes the descriptors left in the table's holes, and the
// process's end of the socket pair.
func (r *Restorer) closePlugs() error {
	var calls []ptrace.Sys
	plugs := slices.Sorted(maps.Keys(r.plugs))
	for i := 0; i < len(plugs); {
		j := i + 1
		for j < len(plugs) && plugs[j] == plugs[j-1]+1 {
			j++
		}
		calls = append(calls, ptrace.Sys{Nr: unix.SYS_CLOSE_RANGE, Args: [6]uint64{plugs[i], plugs[j-1]}})
		i = j
	}
	if r.channel.fd >= 0 {
		calls = append(calls, ptrace.Sys{Nr: unix.SYS_CLOSE, Args: [6]uint64{r.channel.at}})
	}
	if len(calls) == 0 {
		return nil
	}
	if err := r.tr.Syscalls(r.pid, calls); err != nil {
		return fmt.Errorf("close the descriptors in the table's holes and the socket descriptors travelled through: %w", err)
	}
	clear(r.plugs)
	delete(r.kept, r.channel.at)
	r.closeChannel()
	return nil
}
