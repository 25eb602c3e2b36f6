package files

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
)

// ioUringKind is an idle io_uring instance. CRIU's images have no entry
// for one: files.img holds an EXT entry (ExtFileEntry: its id and owner),
// which CRIU's tools decode, and cryo-io-uring.img the ring's geometry,
// its counters and its shared memory (image.IOUring).
//
// Only a ring that a new one, made with io_uring_setup and the same
// geometry, can stand in for exactly is dumped; everything else is
// refused, naming the descriptor and why:
//   - requests in flight, which no restore can make again (see
//     ioUringIdle);
//   - state the ring holds beyond its memory: an SQPOLL thread,
//     registered files, buffers, an eventfd, personalities, provided
//     buffers (legacy or ring-mapped), NAPI busy polling;
//   - setup flags that change what the kernel does with the ring and that
//     fdinfo does not show, found by probes on a duplicate of the
//     descriptor (ioUringProbe): IORING_SETUP_R_DISABLED, SINGLE_ISSUER
//     (and DEFER_TASKRUN, which needs it), IOPOLL, NO_MMAP; and SQE128,
//     CQE32 and NO_SQARRAY, which are kept, when the sizes of the ring's
//     mappings tell them (ioUringLayout);
//   - a ring not mapped whole by the processes that hold it, or mapped by
//     one that holds no descriptor of it.
//
// What cannot be told and is kept as the kernel's default (README):
// IORING_SETUP_COOP_TASKRUN, TASKRUN_FLAG (hints when to run completion
// work), SUBMIT_ALL (whether a batch goes on after an SQE that fails),
// ATTACH_WQ (sharing another ring's async workers), the io-wq limits and
// CPU affinity (IORING_REGISTER_IOWQ_*). A thread's registered ring
// descriptors (IORING_REGISTER_RING_FDS) are the thread's: the dump of
// threads refuses them (dump/threads.go).
type ioUringKind struct{}

// ioUringLink is what /proc/PID/fd/N reads, and the maps show, for an
// io_uring instance.
const ioUringLink = "anon_inode:[io_uring]"

// IOUringPath is what the maps show for a mapping of an io_uring.
const IOUringPath = ioUringLink

func (ioUringKind) typ() pb.FdTypes { return pb.FdTypes_EXT }

func (ioUringKind) claims(d *desc) bool { return d.link == ioUringLink }

// ioUringTable are the rings of the dump: their records, and their
// mappings, checked once every process is dumped (finishIOUrings).
type ioUringTable struct {
	rings []image.IOUring
	// geometries are each ring's region sizes as its flags make them,
	// and as other flags would, by entry id.
	geometries map[uint32]ioUringGeometry
	// maps are the mappings of rings, by entry id.
	maps map[uint32][]ioUringMapping
	// filesOf is the descriptor table of each process dumped.
	filesOf map[int]uint32
}

// ioUringMapping is a mapping of a ring by process pid.
type ioUringMapping struct {
	pid               int
	start, end, pgoff uint64
}

// ioUringGeometry is the page-rounded sizes of a ring's two regions, the
// SQ and CQ rings and the SQEs, as the flags it was made with make them
// (sizes[0]) and as each set of the flags fdinfo does not show would
// (the rest).
type ioUringGeometry struct {
	pid    int
	fd     int
	sizes  [][2]uint64
	flags  []uint32
	params []kernel.IOUringParams
}

// ioUringKey is the files.img key of the ring of inode ino.
func ioUringKey(ino uint64) string { return fmt.Sprintf("io_uring:%d", ino) }

// newIOUringEntry makes the EXT entry of a ring.
func newIOUringEntry(id uint32) *pb.FileEntry {
	return &pb.FileEntry{Type: pb.FdTypes_EXT, Id: id, Entry: &pb.ExtFileEntry{Id: id, Fown: &pb.FownEntry{}}}
}

// IOUringMapping records a mapping of the ring of inode ino by process
// pid at start-end, its offset pgoff, and returns the ring's entry, which
// the VMA's shmid names.
func (t *Table) IOUringMapping(pid int, ino, start, end, pgoff uint64) uint32 {
	id := t.keyed(ioUringKey(ino), newIOUringEntry)
	if t.ioUringTable.maps == nil {
		t.ioUringTable.maps = map[uint32][]ioUringMapping{}
	}
	t.ioUringTable.maps[id] = append(t.ioUringTable.maps[id], ioUringMapping{pid, start, end, pgoff})
	return id
}

func (ioUringKind) dump(t *Table, d *desc) (uint32, error) {
	fail := func(f string, a ...any) (uint32, error) {
		return 0, fmt.Errorf("%w: fd %d of pid %d is an io_uring %s", ErrUnsupported, d.fd, t.pid, fmt.Sprintf(f, a...))
	}
	u, err := d.info.IOUring()
	if err != nil {
		return 0, fmt.Errorf("read io_uring fd %d: %w", d.fd, err)
	}
	if why := ioUringIdle(u); why != "" {
		return fail("%s", why)
	}
	if flags := statusFlags(d.info) &^ unix.O_LARGEFILE; flags != unix.O_RDWR {
		return fail("with status flags %#o (cryo keeps O_RDWR alone)", flags)
	}
	dup, err := kernel.Getfd(t.view, d.fd)
	if err != nil {
		return 0, err
	}
	defer unix.Close(dup)
	if why, err := ioUringProbe(dup, u); err != nil {
		return 0, fmt.Errorf("probe io_uring fd %d of pid %d: %w", d.fd, t.pid, err)
	} else if why != "" {
		return fail("%s", why)
	}
	sq, cq := u.SqMask+1, u.CqMask+1
	flags := uint32(0)
	if cq != 2*sq {
		flags = kernel.IORingSetupCQSize
	}
	geo, p, err := ioUringGeometries(sq, cq, flags)
	if err != nil {
		return 0, fmt.Errorf("io_uring fd %d of pid %d: %w", d.fd, t.pid, err)
	}
	id := t.keyed(ioUringKey(d.st.Ino), newIOUringEntry)
	layout, noSQArray, why := ioUringLayout(t.ioUringTable.maps[id], geo)
	if why != "" {
		return fail("%s", why)
	}
	p = &geo.params[layout]
	flags = p.Flags
	rings, sqes, err := readIOUring(dup, sq, cq, p)
	if err != nil {
		return 0, fmt.Errorf("read io_uring fd %d of pid %d: %w", d.fd, t.pid, err)
	}
	if noSQArray {
		// Its mappings fit a ring without an SQ array too, whose
		// kernel takes the SQEs in order: one whose array maps each
		// entry to itself behaves alike, whichever it is.
		array := p.SqOff.Array
		for i := range sq {
			if got := binary.LittleEndian.Uint32(rings[array+4*i:]); got != i {
				return fail("mapped as %#x bytes of rings, which fit a ring with an SQ array and one without (IORING_SETUP_NO_SQARRAY), and whose SQ array maps entry %d to %d: cryo cannot tell which it is", pageUp(uint64(len(rings))), i, got)
			}
		}
	}
	r := image.IOUring{SqEntries: sq, CqEntries: cq, Flags: flags,
		SqHead: u.SqHead, SqTail: u.SqTail, CqHead: u.CqHead, CqTail: u.CqTail,
		SqOff: ioUringSqOff(p), CqOff: ioUringCqOff(p), Rings: rings, SQEs: sqes}
	// The ring's memory, as read, is what fdinfo showed: the process is
	// frozen, and nothing is in flight.
	for _, w := range []struct {
		name      string
		off, want uint32
	}{
		{"SQ ring mask", r.SqOff[image.SqOffRingMask], u.SqMask}, {"CQ ring mask", r.CqOff[image.CqOffRingMask], u.CqMask},
		{"SQ entries", r.SqOff[image.SqOffRingEntries], sq}, {"CQ entries", r.CqOff[image.CqOffRingEntries], cq},
		{"SQ head", r.SqOff[image.SqOffHead], u.SqHead}, {"SQ tail", r.SqOff[image.SqOffTail], u.SqTail},
		{"CQ head", r.CqOff[image.CqOffHead], u.CqHead}, {"CQ tail", r.CqOff[image.CqOffTail], u.CqTail},
	} {
		if got := binary.LittleEndian.Uint32(rings[w.off:]); got != w.want {
			return fail("whose memory has %s %d where fdinfo says %d", w.name, got, w.want)
		}
	}
	r.ID = id
	if slices.ContainsFunc(t.ioUringTable.rings, func(o image.IOUring) bool { return o.ID == r.ID }) {
		return 0, fmt.Errorf("io_uring fd %d of pid %d: entry %d dumped twice", d.fd, t.pid, r.ID)
	}
	t.ioUringTable.rings = append(t.ioUringTable.rings, r)
	if t.ioUringTable.geometries == nil {
		t.ioUringTable.geometries = map[uint32]ioUringGeometry{}
	}
	geo.pid, geo.fd = t.pid, d.fd
	t.ioUringTable.geometries[r.ID] = geo
	return r.ID, nil
}

// ioUringIdle says what in fdinfo u makes a ring not idle, or holding
// state beyond its memory; "" if nothing.
//
// A request is in flight from when the kernel takes its SQE (which moves
// its cached SQ head) until it posts its CQE (which moves its cached CQ
// tail). Without IOSQE_CQE_SKIP_SUCCESS (no CQE for a request that
// succeeds) and multishot requests (several CQEs for one), each SQE taken
// posts exactly one CQE, so the ring is idle exactly when the two counts
// are equal. A request whose CQE was skipped makes the SQ count run ahead:
// the ring is refused though it may be idle. A multishot request armed
// and one single-shot request in flight would leave the counts equal: a
// multishot request is armed with poll and shows in PollList, which
// must be empty; a multishot receive or accept armed without poll, on a
// socket that already had data, is the case this cannot see (its first
// CQE came at once) — io_uring keeps no count of requests in flight that
// fdinfo shows.
func ioUringIdle(u proc.Uring) string {
	switch {
	case u.SqThread != -1:
		return fmt.Sprintf("with an SQPOLL thread (pid %d), which cryo does not restore", u.SqThread)
	case u.CachedSqHead != u.SqHead:
		return fmt.Sprintf("taking SQEs (kernel's SQ head %d, the ring's %d)", u.CachedSqHead, u.SqHead)
	case u.CachedCqTail != u.CqTail:
		return fmt.Sprintf("posting CQEs (kernel's CQ tail %d, the ring's %d)", u.CachedCqTail, u.CqTail)
	case u.Polls != 0:
		return fmt.Sprintf("with requests in flight armed with poll (%d in PollList); a restore cannot make a request in flight again", u.Polls)
	case u.Overflow != 0:
		return fmt.Sprintf("with %d completions overflowed from its CQ ring (CqOverflowList)", u.Overflow)
	case u.CachedSqHead != u.CachedCqTail:
		return fmt.Sprintf("with requests in flight: %d SQEs taken, %d CQEs posted (or requests with IOSQE_CQE_SKIP_SUCCESS or multishot, which cryo cannot tell from requests in flight); a restore cannot make a request in flight again", u.CachedSqHead, u.CachedCqTail)
	case u.UserFiles != 0:
		return fmt.Sprintf("with %d registered files (IORING_REGISTER_FILES), which cryo does not restore", u.UserFiles)
	case u.UserBufs != 0:
		return fmt.Sprintf("with %d registered buffers (IORING_REGISTER_BUFFERS), which cryo does not restore", u.UserBufs)
	case u.NAPI != "" && u.NAPI != "disabled":
		return fmt.Sprintf("with NAPI busy polling (%s), which cryo does not restore", u.NAPI)
	case len(u.Other) > 0:
		return fmt.Sprintf("whose fdinfo has sections cryo does not know (%s)", strings.Join(u.Other, ", "))
	}
	return ""
}

// ioUringProbe tells, with calls on dup, cryo's duplicate of a ring's
// descriptor, what fdinfo does not show that cryo does not restore; ""
// if none. Each call is one that fails or changes nothing on a ring
// that is as cryo restores it (measured on Linux 6.18):
//   - io_uring_enter with nothing to do fails with EBADFD on a ring set
//     up IORING_SETUP_R_DISABLED and not enabled yet;
//   - io_uring_register fails with EEXIST from any task but the ring's
//     submitter with IORING_SETUP_SINGLE_ISSUER (and DEFER_TASKRUN,
//     which needs it);
//   - IORING_REGISTER_EVENTFD with no argument fails with EBUSY if the
//     ring has an eventfd, EFAULT if not;
//   - waiting for one CQE more than the ring holds returns at once on an
//     IORING_SETUP_IOPOLL ring, whose wait polls the requests in flight
//     and stops when there are none, but waits for its timeout on
//     another (ioUringPolls);
//   - IORING_REGISTER_PBUF_STATUS fails with ENOENT for a buffer group
//     that has no provided buffers, EINVAL for legacy ones
//     (IORING_OP_PROVIDE_BUFFERS), and succeeds for a buffer ring: every
//     group is asked (65,536 calls, 10-12 ms here);
//   - a personality registered gets the next id of the ring's: one past
//     the last registered, 1 on a ring that never had one. It is
//     unregistered at once, so the ring is as it was but that its next
//     id is one higher (a process left running after the dump may see it).
func ioUringProbe(dup int, u proc.Uring) (string, error) {
	if _, err := kernel.IOUringEnter(dup, 0, 0, 0, nil, 0); err == unix.EBADFD {
		return "set up disabled (IORING_SETUP_R_DISABLED) and not enabled yet", nil
	} else if err != nil {
		return "", fmt.Errorf("io_uring_enter: %w", err)
	}
	if _, err := kernel.IOUringRegister(dup, kernel.IORingRegisterProbe, nil, 0); err == unix.EEXIST {
		return "with a single submitter (IORING_SETUP_SINGLE_ISSUER, or DEFER_TASKRUN), which cryo does not restore", nil
	}
	switch _, err := kernel.IOUringRegister(dup, kernel.IORingRegisterEventfd, nil, 1); err {
	case unix.EBUSY:
		return "with a registered eventfd (IORING_REGISTER_EVENTFD), which cryo does not restore", nil
	case unix.EFAULT:
	default:
		return "", fmt.Errorf("io_uring_register(IORING_REGISTER_EVENTFD, NULL): %v, not EFAULT or EBUSY", err)
	}
	iopoll, err := ioUringPolls(dup, u)
	if err != nil {
		return "", err
	}
	if iopoll {
		return "that polls for completions (IORING_SETUP_IOPOLL), which cryo does not restore", nil
	}
	first, err := freshIOUring()
	if err != nil {
		return "", err
	}
	if !first.bufStatus {
		return "whose provided buffers cryo cannot see on this kernel (no IORING_REGISTER_PBUF_STATUS, Linux 6.8)", nil
	}
	for bgid := uint32(0); bgid <= kernel.IOUringMaxBufGroup; bgid++ {
		switch err := kernel.IOUringBufGroupStatus(dup, bgid); err {
		case unix.ENOENT:
		case unix.EINVAL:
			return fmt.Sprintf("with provided buffers in group %d (IORING_OP_PROVIDE_BUFFERS), which cryo does not restore", bgid), nil
		case nil:
			return fmt.Sprintf("with a ring of provided buffers in group %d (IORING_REGISTER_PBUF_RING), which cryo does not restore", bgid), nil
		default:
			return "", fmt.Errorf("io_uring_register(IORING_REGISTER_PBUF_STATUS, %d): %w", bgid, err)
		}
	}
	id, err := kernel.IOUringRegister(dup, kernel.IORingRegisterPersonality, nil, 0)
	if err != nil {
		return "", fmt.Errorf("io_uring_register(IORING_REGISTER_PERSONALITY): %w", err)
	}
	if _, err := kernel.IOUringRegister(dup, kernel.IORingUnregisterPersonality, nil, uint32(id)); err != nil {
		return "", fmt.Errorf("io_uring_register(IORING_UNREGISTER_PERSONALITY, %d): %w", id, err)
	}
	if id != first.personality {
		return fmt.Sprintf("that has or had registered personalities (IORING_REGISTER_PERSONALITY: the next id is %d), which cryo does not restore", id), nil
	}
	return "", nil
}

// ioUringPolls tells whether the ring dup, whose fdinfo is u, was set up
// IORING_SETUP_IOPOLL: a wait for one CQE more than it holds returns at
// once, where another ring's waits for the timeout, which ends it with
// ETIME if the ring holds no CQE, else with success. So, with CQEs
// pending, the wait is timed: one that ends before its timeout is
// IOPOLL's (a timer never fires early); two that last it are taken for
// another ring's (an IOPOLL ring's would have been held up that long
// twice).
func ioUringPolls(dup int, u proc.Uring) (bool, error) {
	cq, pending := u.CqMask+1, u.CqTail-u.CqHead
	if pending >= cq {
		return false, fmt.Errorf("%w: its CQ ring is full (%d CQEs not reaped): cryo cannot tell whether it polls (IORING_SETUP_IOPOLL)", ErrUnsupported, pending)
	}
	timeout := time.Microsecond
	tries := 1
	if pending > 0 {
		timeout, tries = ioUringPollWait, 2
	}
	for try := 0; try < tries; {
		start := time.Now()
		err := kernel.IOUringWait(dup, pending+1, timeout)
		took := time.Since(start)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ETIME && pending == 0:
			return false, nil
		case err == nil && pending == 0:
			return true, nil
		case err == nil && took < timeout:
			return true, nil
		case err != nil:
			return false, fmt.Errorf("io_uring_enter(GETEVENTS, %d, %v): %w", pending+1, timeout, err)
		}
		try++
	}
	return false, nil
}

// ioUringPollWait is how long ioUringPolls waits on a ring holding CQEs.
const ioUringPollWait = 20 * time.Millisecond

// freshRing is what the probes find on a ring just made.
type freshRing struct {
	// personality is the id its first personality gets.
	personality int
	// bufStatus says IORING_REGISTER_PBUF_STATUS tells a buffer group
	// without provided buffers (ENOENT): not on kernels before 6.8.
	bufStatus bool
}

// freshIOUring makes a ring in cryo and probes it.
func freshIOUring() (freshRing, error) {
	var f freshRing
	var p kernel.IOUringParams
	fd, err := kernel.IOUringSetup(1, &p)
	if err != nil {
		return f, fmt.Errorf("io_uring_setup: %w", err)
	}
	defer unix.Close(fd)
	f.bufStatus = kernel.IOUringBufGroupStatus(fd, 0) == unix.ENOENT
	if f.personality, err = kernel.IOUringRegister(fd, kernel.IORingRegisterPersonality, nil, 0); err != nil {
		return f, fmt.Errorf("io_uring_register(IORING_REGISTER_PERSONALITY): %w", err)
	}
	return f, nil
}

// ioUringFlagsKept are the setup flags a restore makes a ring with.
const ioUringFlagsKept = kernel.IORingSetupCQSize | kernel.IORingSetupSQE128 | kernel.IORingSetupCQE32 | kernel.IORingSetupNoSQArray

// ioUringAltFlags are the setup flags that change the sizes of a ring's
// regions, and which nothing but those sizes shows.
var ioUringAltFlags = []uint32{kernel.IORingSetupSQE128, kernel.IORingSetupCQE32, kernel.IORingSetupNoSQArray}

// ioUringGeometries makes rings of sq and cq entries in cryo, with flags
// and with each set of ioUringAltFlags added, and returns their region
// sizes, and the parameters the one with flags was given.
func ioUringGeometries(sq, cq, flags uint32) (ioUringGeometry, *kernel.IOUringParams, error) {
	var g ioUringGeometry
	var first *kernel.IOUringParams
	for set := range 1 << len(ioUringAltFlags) {
		f := flags
		for i, alt := range ioUringAltFlags {
			if set&(1<<i) != 0 {
				f |= alt
			}
		}
		p := kernel.IOUringParams{Flags: f, CqEntries: cq}
		fd, err := kernel.IOUringSetup(sq, &p)
		if err != nil {
			return g, nil, fmt.Errorf("io_uring_setup(%d, flags %#x, %d CQEs) to learn the ring's layout: %w", sq, f, cq, err)
		}
		unix.Close(fd)
		if p.SqEntries != sq || p.CqEntries != cq {
			return g, nil, fmt.Errorf("io_uring_setup(%d, flags %#x, %d CQEs) made %d and %d entries", sq, f, cq, p.SqEntries, p.CqEntries)
		}
		if p.Features&kernel.IORingFeatSingleMmap == 0 {
			return g, nil, fmt.Errorf("%w: this kernel maps the SQ and CQ rings apart (no IORING_FEAT_SINGLE_MMAP)", ErrUnsupported)
		}
		rings, sqes := ioUringSizes(&p)
		g.sizes = append(g.sizes, [2]uint64{pageUp(rings), pageUp(sqes)})
		g.flags = append(g.flags, f)
		g.params = append(g.params, p)
		if set == 0 {
			first = &p
		}
	}
	return g, first, nil
}

// ioUringSizes are the bytes of a ring's SQ and CQ rings, and of its
// SQEs, as io_uring_setup gave p.
func ioUringSizes(p *kernel.IOUringParams) (rings, sqes uint64) {
	cqe, sqe := uint64(image.IOUringCQESize), uint64(image.IOUringSQESize)
	if p.Flags&kernel.IORingSetupCQE32 != 0 {
		cqe *= 2
	}
	if p.Flags&kernel.IORingSetupSQE128 != 0 {
		sqe *= 2
	}
	rings = uint64(p.CqOff.Cqes) + cqe*uint64(p.CqEntries)
	if p.Flags&kernel.IORingSetupNoSQArray == 0 {
		rings = max(rings, uint64(p.SqOff.Array)+4*uint64(p.SqEntries))
	}
	return rings, sqe * uint64(p.SqEntries)
}

func pageUp(n uint64) uint64 { return (n + kernel.PageSize - 1) &^ (kernel.PageSize - 1) }

func ioUringSqOff(p *kernel.IOUringParams) [image.IOUringOffsets]uint32 {
	o := p.SqOff
	return [image.IOUringOffsets]uint32{o.Head, o.Tail, o.RingMask, o.RingEntries, o.Flags, o.Dropped, o.Array}
}

func ioUringCqOff(p *kernel.IOUringParams) [image.IOUringOffsets]uint32 {
	o := p.CqOff
	return [image.IOUringOffsets]uint32{o.Head, o.Tail, o.RingMask, o.RingEntries, o.Overflow, o.Cqes, o.Flags}
}

// readIOUring reads the memory of the ring dup: its SQ and CQ rings and
// its SQEs, laid out as p says.
func readIOUring(dup int, sq, cq uint32, p *kernel.IOUringParams) (rings, sqes []byte, err error) {
	nr, ns := ioUringSizes(p)
	for _, r := range []struct {
		off  int64
		size uint64
		to   *[]byte
	}{{kernel.IORingOffSQRing, nr, &rings}, {kernel.IORingOffSQEs, ns, &sqes}} {
		m, err := unix.Mmap(dup, r.off, int(r.size), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, nil, fmt.Errorf("map its region at %#x (%d bytes): %w", r.off, r.size, err)
		}
		*r.to = slices.Clone(m)
		unix.Munmap(m)
	}
	return rings, sqes, nil
}

// processFiles tells the table that process pid has descriptor table
// filesID.
func (t *Table) processFiles(pid int, filesID uint32) {
	if t.ioUringTable.filesOf == nil {
		t.ioUringTable.filesOf = map[int]uint32{}
	}
	t.ioUringTable.filesOf[pid] = filesID
}

// FinishIOUrings checks the rings once every process is dumped: each
// mapping is of a ring dumped, by a process that holds a descriptor of
// it, and each ring is one process's (a restore makes it in the process,
// and cannot send it to another: the kernel refuses io_urings in
// SCM_RIGHTS).
func (t *Table) FinishIOUrings() error {
	for id, geo := range t.ioUringTable.geometries {
		var holders []int
		for pid, files := range t.ioUringTable.filesOf {
			if slices.ContainsFunc(t.fds[files], func(e fdEntry) bool { return e.id == id }) {
				holders = append(holders, pid)
			}
		}
		if len(holders) > 1 {
			slices.Sort(holders)
			return fmt.Errorf("%w: the io_uring of fd %d of pid %d is held by pids %v: cryo restores a ring in one process", ErrUnsupported, geo.fd, geo.pid, holders)
		}
	}
	for id, ms := range t.ioUringTable.maps {
		geo, ok := t.ioUringTable.geometries[id]
		if !ok {
			m := ms[0]
			return fmt.Errorf("%w: pid %d maps an io_uring at %#x-%#x whose descriptor no process dumped holds (IORING_SETUP_REGISTERED_FD_ONLY, or closed)", ErrUnsupported, m.pid, m.start, m.end)
		}
		for _, m := range ms {
			held := slices.ContainsFunc(t.fds[t.ioUringTable.filesOf[m.pid]], func(e fdEntry) bool { return e.id == id })
			if !held {
				return fmt.Errorf("%w: pid %d maps the io_uring of fd %d of pid %d at %#x-%#x but holds no descriptor of it", ErrUnsupported, m.pid, geo.fd, geo.pid, m.start, m.end)
			}
		}
	}
	return nil
}

// ioUringLayout checks the mappings ms of a ring of geometry geo: each
// at the offset of one of its two regions (the SQ and CQ rings, and the
// SQEs), no longer than the region; and both regions mapped whole, their
// sizes telling the flags that change them (ioUringAltFlags:
// IORING_SETUP_NO_SQARRAY, which liburing 2.5 and later ask for, SQE128,
// CQE32), which must be one set of them. It returns
// the index in geo of the layout the sizes tell, and whether they fit a
// ring without an SQ array too; or says why not.
func ioUringLayout(ms []ioUringMapping, geo ioUringGeometry) (layout int, noSQArray bool, why string) {
	if len(ms) == 0 {
		return 0, false, "not mapped by the processes dumped (IORING_SETUP_NO_MMAP, or unmapped): cryo cannot tell its setup flags"
	}
	largest := [2]uint64{}
	for _, s := range geo.sizes {
		largest[0], largest[1] = max(largest[0], s[0]), max(largest[1], s[1])
	}
	var size [2]uint64
	for _, m := range ms {
		var region int
		switch m.pgoff {
		case kernel.IORingOffSQRing, kernel.IORingOffCQRing:
		case kernel.IORingOffSQEs:
			region = 1
		default:
			return 0, false, fmt.Sprintf("mapped by pid %d at offset %#x (%#x-%#x), not one of its regions' (a provided buffer ring?)", m.pid, m.pgoff, m.start, m.end)
		}
		if m.end-m.start > largest[region] {
			return 0, false, fmt.Sprintf("mapped by pid %d at %#x-%#x, past the largest region of %#x bytes at offset %#x a ring of its entries has", m.pid, m.start, m.end, largest[region], m.pgoff)
		}
		if m.pgoff != kernel.IORingOffCQRing {
			size[region] = max(size[region], m.end-m.start)
		}
	}
	var match []uint32
	var at []int
	for i, s := range geo.sizes {
		if s == size {
			match = append(match, geo.flags[i])
			at = append(at, i)
		}
	}
	switch {
	case len(match) == 1:
		return at[0], false, ""
	case len(match) == 2 && match[1] == match[0]|kernel.IORingSetupNoSQArray:
		return at[0], true, ""
	}
	return 0, false, fmt.Sprintf("mapped as %#x bytes of rings and %#x of SQEs: cryo cannot tell its setup flags (IORING_SETUP_SQE128, CQE32, NO_SQARRAY: these sizes fit flags %#x; without them %#x and %#x); a ring must be mapped whole", size[0], size[1], match, geo.sizes[0][0], geo.sizes[0][1])
}

func (t *ioUringTable) write(dir *image.Dir) error {
	if len(t.rings) == 0 {
		return nil
	}
	return dir.WriteIOUrings(t.rings)
}

// ioUringSet are the rings of a checkpoint, by entry id.
type ioUringSet struct {
	ioUrings map[uint32]image.IOUring
}

func (s *Set) loadIOUrings() error {
	rings, err := s.dir.ReadIOUrings()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	s.ioUrings = map[uint32]image.IOUring{}
	for _, u := range rings {
		if f := s.File(u.ID); f == nil || f.GetExt() == nil {
			return imageErr("%s: file %d is not an EXT entry", image.IOUrings.FileName(0), u.ID)
		}
		if _, dup := s.ioUrings[u.ID]; dup {
			return imageErr("%s: file %d twice", image.IOUrings.FileName(0), u.ID)
		}
		s.ioUrings[u.ID] = u
	}
	return nil
}

// IOUring returns the ring of entry id, if it is one.
func (s *Set) IOUring(id uint32) (image.IOUring, bool) {
	u, ok := s.ioUrings[id]
	return u, ok
}

func (ioUringKind) check(s *Set, f *pb.FileEntry) error {
	if f.GetExt() == nil {
		return imageErr("file %d: EXT without an ext entry", f.GetId())
	}
	u, ok := s.ioUrings[f.GetId()]
	if !ok {
		return fmt.Errorf("%w: file %d is an external file (EXT) that is not an io_uring of %s", ErrUnsupported, f.GetId(), image.IOUrings.FileName(0))
	}
	if u.Flags&^ioUringFlagsKept != 0 {
		return fmt.Errorf("%w: io_uring %d has setup flags %#x", ErrUnsupported, f.GetId(), u.Flags)
	}
	return nil
}

// open makes the ring in the process, so that it is the process's
// (its memory accounted to it), with the dumped geometry, brings the
// kernel's counters to the dumped ones (advanceIOUring), and writes the
// dumped memory over the new ring's. The new ring's offsets must be the
// dumped ones: the process's library keeps pointers by them.
//
// An io_uring cannot travel over a unix socket (the kernel refuses it
// in SCM_RIGHTS, EINVAL), as the other descriptors reach the process
// (deliver.go): the ring stays in the process, at a number out of the
// table's, and what open returns, to be sent to the ring's numbers, is
// /dev/null, which placed replaces with the ring.
func (ioUringKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	n, err := ioUringMake(r, f)
	if err != nil {
		return -1, err
	}
	at := n
	if r.isTarget(n) || r.kept[n] {
		at = r.free(n+1, func(m uint64) bool { return r.isTarget(m) || m == n })
		if err := r.tr.Syscalls(r.pid, []ptrace.Sys{{Nr: unix.SYS_DUP3, Args: [6]uint64{n, at, unix.O_CLOEXEC}}, {Nr: unix.SYS_CLOSE, Args: [6]uint64{n}}}); err != nil {
			return -1, fmt.Errorf("io_uring %d: move fd %d out of the table's numbers, to %d: %w", f.GetId(), n, at, err)
		}
	}
	r.kept[at] = true
	if r.ioUringAt == nil {
		r.ioUringAt = map[uint32]uint64{}
	}
	r.ioUringAt[f.GetId()] = at
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/null, to stand for io_uring %d: %w", f.GetId(), err)
	}
	return null, nil
}

// placed puts each ring made at its numbers, in place of the /dev/null
// sent there (open).
func (ioUringKind) placed(r *Restorer) error {
	for id, at := range r.ioUringAt {
		var calls []ptrace.Sys
		for _, fd := range r.set.Fds {
			if fd.GetId() != id {
				continue
			}
			flags := uint64(0)
			if fd.GetFlags()&unix.FD_CLOEXEC != 0 {
				flags = unix.O_CLOEXEC
			}
			calls = append(calls, ptrace.Sys{Nr: unix.SYS_DUP3, Args: [6]uint64{at, uint64(fd.GetFd()), flags}})
		}
		calls = append(calls, ptrace.Sys{Nr: unix.SYS_CLOSE, Args: [6]uint64{at}})
		if err := r.tr.Syscalls(r.pid, calls); err != nil {
			return fmt.Errorf("io_uring %d: put fd %d at its numbers: %w", id, at, err)
		}
		delete(r.kept, at)
	}
	r.ioUringAt = nil
	return nil
}

// ioUringMake makes the ring of entry f in the process, and returns its
// number there.
func ioUringMake(r *Restorer, f *pb.FileEntry) (uint64, error) {
	u := r.set.ioUrings[f.GetId()]
	scratch, err := r.scratch()
	if err != nil {
		return 0, err
	}
	p := kernel.IOUringParams{Flags: u.Flags, CqEntries: u.CqEntries}
	if err := r.tr.WriteValue(scratch, p); err != nil {
		return 0, err
	}
	n, err := r.tr.Syscall(r.pid, unix.SYS_IO_URING_SETUP, uint64(u.SqEntries), scratch)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w (io_uring disabled here? sysctl kernel.io_uring_disabled)", err)
		}
		return 0, fmt.Errorf("make io_uring of %d SQEs, %d CQEs (flags %#x): %w", u.SqEntries, u.CqEntries, u.Flags, err)
	}
	dup, err := r.getfd(n)
	if err == nil {
		err = r.tr.ReadValue(scratch, &p)
	}
	if err == nil {
		err = r.fillIOUring(&u, &p, n, dup)
	}
	if dup >= 0 {
		unix.Close(dup)
	}
	if err != nil {
		r.sys(unix.SYS_CLOSE, n)
		return 0, fmt.Errorf("io_uring %d: %w", f.GetId(), err)
	}
	return n, nil
}

// fillIOUring makes the new ring n of the process, dup in cryo, made with
// p, the dumped ring u.
func (r *Restorer) fillIOUring(u *image.IOUring, p *kernel.IOUringParams, n uint64, dup int) error {
	switch {
	case p.SqEntries != u.SqEntries || p.CqEntries != u.CqEntries:
		return fmt.Errorf("%w: io_uring_setup made %d SQEs and %d CQEs, not %d and %d", ErrUnsupported, p.SqEntries, p.CqEntries, u.SqEntries, u.CqEntries)
	case ioUringSqOff(p) != u.SqOff || ioUringCqOff(p) != u.CqOff:
		return fmt.Errorf("%w: this kernel lays the rings out otherwise (SQ offsets %v, CQ offsets %v; dumped %v, %v), and the process keeps pointers by the old offsets", ErrUnsupported, ioUringSqOff(p), ioUringCqOff(p), u.SqOff, u.CqOff)
	}
	if nr, ns := ioUringSizes(p); nr != uint64(len(u.Rings)) || ns != uint64(len(u.SQEs)) {
		return fmt.Errorf("%w: this kernel's rings take %d and %d bytes, not %d and %d", ErrUnsupported, nr, ns, len(u.Rings), len(u.SQEs))
	}
	rings, err := unix.Mmap(dup, kernel.IORingOffSQRing, len(u.Rings), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map the new rings in cryo: %w", err)
	}
	defer unix.Munmap(rings)
	sqes, err := unix.Mmap(dup, kernel.IORingOffSQEs, len(u.SQEs), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map the new SQEs in cryo: %w", err)
	}
	defer unix.Munmap(sqes)
	start := time.Now()
	if r.log != nil && u.SqHead >= ioUringLongAdvance {
		r.log.Info("bringing an io_uring's counters to the dumped ones with NOPs: about a second per 10 million", "pid", r.pid, "fd", n, "nops", u.SqHead)
	}
	if err := r.advanceIOUring(u, n, rings, sqes); err != nil {
		return err
	}
	if r.log != nil {
		r.log.Debug("io_uring counters brought to the dumped ones with NOPs", "pid", r.pid, "nops", u.SqHead, "took", time.Since(start))
	}
	copy(rings, u.Rings)
	copy(sqes, u.SQEs)
	info, err := proc.ReadFdinfo(r.pid, int(n))
	if err != nil {
		return err
	}
	got, err := info.IOUring()
	if err != nil {
		return err
	}
	if got.SqHead != u.SqHead || got.SqTail != u.SqTail || got.CqHead != u.CqHead || got.CqTail != u.CqTail ||
		got.CachedSqHead != u.SqHead || got.CachedCqTail != u.CqTail || ioUringIdle(got) != "" {
		return fmt.Errorf("the new ring has SQ head %d (kernel's %d), tail %d, CQ head %d, tail %d (kernel's %d), not %d, %d, %d, %d", got.SqHead, got.CachedSqHead, got.SqTail, got.CqHead, got.CqTail, got.CachedCqTail, u.SqHead, u.SqTail, u.CqHead, u.CqTail)
	}
	return nil
}

// ioUringLongAdvance is how many NOPs make a restore say it is moving a
// ring's counters before it does.
const ioUringLongAdvance = 10_000_000

// advanceIOUring brings the kernel's own counters of the new ring n of
// the process, which the process cannot set, to the dumped ring's: the
// SQEs it took (its SQ head) and the CQEs it posted (its CQ tail), equal
// on an idle ring (ioUringIdle). Each NOP submitted moves both by one;
// they are submitted a ring's worth at a time, from SQEs cryo writes
// through its own mapping of the ring, and reaped by moving the CQ head.
// The counters are free-running u32s: a ring that did 4 billion
// requests costs 4 billion NOPs (about 16 million a second here).
func (r *Restorer) advanceIOUring(u *image.IOUring, n uint64, rings, sqes []byte) error {
	le := binary.LittleEndian
	if u.Flags&kernel.IORingSetupNoSQArray == 0 {
		array := u.SqOff[image.SqOffArray]
		for i := range u.SqEntries {
			le.PutUint32(rings[array+4*i:], i)
		}
	}
	clear(sqes) // a zeroed SQE is a NOP (IORING_OP_NOP = 0)
	var done uint32
	for done != u.SqHead {
		batch := min(u.SqHead-done, u.SqEntries)
		le.PutUint32(rings[u.SqOff[image.SqOffTail]:], done+batch)
		got, err := r.tr.Syscall(r.pid, unix.SYS_IO_URING_ENTER, n, uint64(batch), 0, 0, 0, 0)
		if err != nil {
			return fmt.Errorf("submit %d NOPs to bring the new ring's counters to %d (%d done): %w", batch, u.SqHead, done, err)
		}
		if got != uint64(batch) {
			return fmt.Errorf("submitted %d NOPs of %d to bring the new ring's counters to %d (%d done)", got, batch, u.SqHead, done)
		}
		done += batch
		le.PutUint32(rings[u.CqOff[image.CqOffHead]:], le.Uint32(rings[u.CqOff[image.CqOffTail]:]))
	}
	if h, t := le.Uint32(rings[u.SqOff[image.SqOffHead]:]), le.Uint32(rings[u.CqOff[image.CqOffTail]:]); h != u.SqHead || t != u.CqTail {
		return fmt.Errorf("after %d NOPs the new ring's SQ head is %d and CQ tail %d, not %d and %d", u.SqHead, h, t, u.SqHead, u.CqTail)
	}
	return nil
}
