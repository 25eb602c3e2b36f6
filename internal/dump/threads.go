package dump

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/cpu"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
)

// maxVDSOSteps bounds the single-stepping out of the vDSO: its longest
// function returns in a few hundred instructions unless it loops on a
// seqlock that a writer holds, which the kernel releases at once.
const maxVDSOSteps = 100000

// dumpThread collects the state of one stopped thread into its core image,
// first stepping it out of the vDSO if it is inside.
func (d *dumper) dumpThread(tid int) (*pb.CoreEntry, error) {
	tr := d.tr
	regs, err := tr.GetRegs(tid)
	if err != nil {
		return nil, err
	}
	for _, v := range d.vdsos {
		if ptrace.PC(regs) >= v.Start && ptrace.PC(regs) < v.End {
			d.log.Info("stepping thread out of the vDSO", "tid", tid, "rip", fmt.Sprintf("%#x", ptrace.PC(regs)))
			if regs, err = tr.StepOut(tid, v.Start, v.End, maxVDSOSteps); err != nil {
				return nil, err
			}
		}
	}
	xstate, err := tr.GetRegset(tid, unix.NT_X86_XSTATE)
	if err != nil {
		return nil, err
	}
	fpregs, err := d.host.XStateToImage(xstate)
	if err != nil {
		return nil, fmt.Errorf("tid %d: %w", tid, err)
	}
	blocked, err := tr.GetSigmask(tid)
	if err != nil {
		return nil, err
	}
	queued, err := tr.QueuedSignals(tid, false)
	if err != nil {
		return nil, err
	}
	robust, err := kernel.GetRobustList(tid)
	if err != nil {
		return nil, err
	}
	stat, err := proc.ReadTaskStat(d.pid, tid)
	if err != nil {
		return nil, err
	}

	// What only the thread can tell: its alternate signal stack, its
	// clear_child_tid address, its parent-death signal and its timer
	// slack, in one batch; the view's batch asks what only the process
	// can tell too (dumpProcess reads it).
	a, err := d.newAsks(tid)
	if err != nil {
		return nil, err
	}
	var processAnswers func() (*processAnswers, error)
	if tid == d.view {
		processAnswers = d.askProcess(a)
	}
	var sas kernel.StackT
	var clearTid uint64 // int *, as PR_GET_TID_ADDRESS writes it
	var pdeath int32
	sasAt := a.buf(uint64(binary.Size(sas)))
	a.ask("sigaltstack", false, unix.SYS_SIGALTSTACK, 0, sasAt)
	clearTidAt := a.buf(8)
	a.ask("clear_child_tid", false, unix.SYS_PRCTL, unix.PR_GET_TID_ADDRESS, clearTidAt)
	pdeathAt := a.buf(4)
	a.ask("parent-death signal", false, unix.SYS_PRCTL, unix.PR_GET_PDEATHSIG, pdeathAt)
	slack := a.ask("timer slack", false, unix.SYS_PRCTL, unix.PR_GET_TIMERSLACK)
	// Without NUMA (ENOSYS), the thread has none.
	modeAt, nodesAt := a.buf(4), a.buf(image.MaxNodeWords*8)
	mempolicy := a.ask("memory policy", true, unix.SYS_GET_MEMPOLICY, modeAt, nodesAt, image.MaxNodeWords*64, 0, 0)
	var rings []int
	if d.mapsIOUring {
		rings = askRegisteredRings(a)
	}
	if err := a.run(); err != nil {
		return nil, err
	}
	if err := refuseRegisteredRings(a, tid, rings); err != nil {
		return nil, err
	}
	if processAnswers != nil {
		if d.asked, err = processAnswers(); err != nil {
			return nil, err
		}
	}
	if err := errors.Join(a.value(sasAt, &sas), a.value(clearTidAt, &clearTid), a.value(pdeathAt, &pdeath)); err != nil {
		return nil, err
	}
	if stat.Policy == unix.SCHED_DEADLINE {
		return nil, fmt.Errorf("%w: tid %d runs under SCHED_DEADLINE, whose runtime, deadline and period CRIU's images have no place for", ErrUnsupported, tid)
	}
	if err := checkTimerSlack(tid, a.calls[slack].Ret, stat.Policy); err != nil {
		return nil, err
	}
	// With SCHED_RESET_ON_FORK, which stat leaves out; CRIU keeps it so.
	policy, err := kernel.SchedGetScheduler(tid)
	if err != nil {
		return nil, fmt.Errorf("get scheduling policy of tid %d: %w", tid, err)
	}

	tc := &pb.ThreadCoreEntry{
		FutexRla:    robust.Head,
		FutexRlaLen: uint32(robust.Len),
		SchedNice:   pb.Int32(int32(stat.Nice)),
		SchedPolicy: pb.Uint32(policy),
		SchedPrio:   pb.Uint32(stat.RTPriority),
		BlkSigset:   pb.Uint64(blocked),
		Sas: &pb.ThreadSasEntry{
			SsSp:    sas.Sp,
			SsFlags: uint32(sas.Flags),
			SsSize:  sas.Size,
		},
		Comm:      pb.String(stat.Comm),
		SignalsP:  signalQueue(queued),
		PdeathSig: pb.Uint32(uint32(pdeath)),
	}
	var mem memPolicy
	if a.calls[mempolicy].Failed() == nil {
		mem.nodes = make([]uint64, image.MaxNodeWords)
		if err := errors.Join(a.value(modeAt, &mem.mode), a.value(nodesAt, mem.nodes)); err != nil {
			return nil, err
		}
	}
	if err := d.recordThreadExtra(tid, mem); err != nil {
		return nil, err
	}
	rs, err := tr.GetRseqConfiguration(tid)
	if errors.Is(err, unix.EIO) {
		// Linux before 5.13 cannot tell a tracer about rseq: the
		// registration, if any, is not restored (glibc then reads a stale
		// CPU number from its rseq area; nothing else depends on it).
		d.log.Warn("this kernel cannot report rseq registrations (Linux < 5.13); not dumping them", "tid", tid)
	} else if err != nil {
		return nil, err
	}
	if rs.RseqAbiPointer != 0 {
		// The rseq_cs field (offset 8) says whether the thread is inside a
		// critical section; the kernel would restart it at its abort
		// handler, and so will the restore.
		var cs uint64
		if err := tr.ReadValue(rs.RseqAbiPointer+8, &cs); err != nil {
			return nil, fmt.Errorf("read rseq area of tid %d: %w", tid, err)
		}
		tc.RseqEntry = &pb.RseqEntry{
			RseqAbiPointer: rs.RseqAbiPointer,
			RseqAbiSize:    rs.RseqAbiSize,
			Signature:      rs.Signature,
			RseqCsPointer:  pb.Uint64(cs),
		}
	}
	return &pb.CoreEntry{
		Mtype: pb.CoreEntry_X86_64,
		ThreadInfo: &pb.ThreadInfoX86{
			ClearTidAddr: clearTid,
			Gpregs:       cpu.RegsToImage(&regs),
			Fpregs:       fpregs,
		},
		ThreadCore: tc,
	}, nil
}

// memPolicy is a thread's NUMA memory policy, as get_mempolicy gives it.
type memPolicy struct {
	mode  uint32
	nodes []uint64
}

// recordThreadExtra keeps what thread tid holds that CRIU's core entry
// does not: the CPUs it may run on when they are not the ones cryo may
// (a restore gives a thread without them the CPUs its own cryo may run
// on, so that a process is not tied to the CPUs of the machine it was
// dumped on unless it tied itself), its I/O priority if one was set, and
// its memory policy, policy, if it has one.
func (d *dumper) recordThreadExtra(tid int, policy memPolicy) error {
	own, err := d.ownExtras()
	if err != nil {
		return err
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(tid, &set); err != nil {
		return fmt.Errorf("read CPU affinity of tid %d: %w", tid, err)
	}
	x := image.ThreadExtra{TID: uint32(tid)}
	if set != own.cpus {
		for _, w := range set {
			x.CPUs = append(x.CPUs, uint64(w))
		}
		for len(x.CPUs) > 1 && x.CPUs[len(x.CPUs)-1] == 0 {
			x.CPUs = x.CPUs[:len(x.CPUs)-1]
		}
	}
	prio, err := kernel.IoprioGet(tid)
	if err != nil {
		return fmt.Errorf("read I/O priority of tid %d: %w", tid, err)
	}
	x.IOPrio = prio
	if policy.mode != unix.MPOL_DEFAULT {
		x.MemPolicy, x.MemNodes = policy.mode, policy.nodes
		for len(x.MemNodes) > 0 && x.MemNodes[len(x.MemNodes)-1] == 0 {
			x.MemNodes = x.MemNodes[:len(x.MemNodes)-1]
		}
	}
	// A thread may have set its own (through /proc/thread-self), and a
	// restored one has its leader's.
	if d.loginUID != nil {
		uid, err := proc.ReadLoginUID(tid)
		if err != nil {
			return err
		}
		if uid != *d.loginUID {
			x.LoginUID = &uid
		}
	}
	if x.CPUs != nil || x.IOPrio != 0 || x.MemPolicy != 0 || x.LoginUID != nil {
		d.threadExtras = append(d.threadExtras, x)
	}
	return nil
}

// recordProcessExtra keeps, on its leader's record of
// cryo-thread-extra.img, what the process holds that CRIU's images do
// not: its memory-deny-write-execute flags (PR_SET_MDWE), which only the
// process may read (without them a restored process could make writable
// memory executable, which it could not), and its core dump filter when
// it is not cryo's (which a restored process gets otherwise). asked is
// what the process said of its flags.
func (d *dumper) recordProcessExtra(asked answer) error {
	mdwe, err := asked.v, asked.err
	if errors.Is(err, unix.EINVAL) { // before Linux 6.3: none
		mdwe, err = 0, nil
	}
	if err != nil {
		return err
	}
	own, err := d.ownExtras()
	if err != nil {
		return err
	}
	filter, err := proc.ReadCoredumpFilter(d.view)
	if err != nil {
		return err
	}
	if mdwe == 0 && filter == own.coredumpFilter {
		return nil
	}
	i := slices.IndexFunc(d.threadExtras, func(x image.ThreadExtra) bool { return x.TID == uint32(d.pid) })
	if i < 0 {
		i = len(d.threadExtras)
		d.threadExtras = append(d.threadExtras, image.ThreadExtra{TID: uint32(d.pid)})
	}
	d.threadExtras[i].MDWE = uint32(mdwe)
	if filter != own.coredumpFilter {
		d.threadExtras[i].CoredumpFilter = &filter
	}
	return nil
}

// ownExtras are cryo's own CPUs and core dump filter, which a process
// restored gets unless it had others: those the dump records.
type ownExtras struct {
	cpus           unix.CPUSet
	coredumpFilter uint32
	label          string // security label, "" without a module
}

// ownExtras reads cryo's own, once per dump.
func (t *tree) ownExtras() (*ownExtras, error) {
	if t.own != nil {
		return t.own, nil
	}
	own := &ownExtras{}
	if err := unix.SchedGetaffinity(0, &own.cpus); err != nil {
		return nil, fmt.Errorf("read cryo's CPU affinity: %w", err)
	}
	var err error
	if own.coredumpFilter, err = proc.ReadCoredumpFilter(0); err != nil {
		return nil, err
	}
	if own.label, err = proc.ReadSecurityLabel(0); err != nil {
		return nil, err
	}
	t.own = own
	return own, nil
}

// defaultTimerSlack is the kernel's timer slack (50 µs), which every
// thread inherits unless one of its ancestors changed its own.
const defaultTimerSlack = 50000

// checkTimerSlack refuses a thread whose timer slack is not the default:
// CRIU's images have no field for it. A real-time thread has none.
func checkTimerSlack(tid int, slack uint64, policy uint32) error {
	rt := policy == unix.SCHED_FIFO || policy == unix.SCHED_RR
	if slack != defaultTimerSlack && !(rt && slack == 0) {
		return fmt.Errorf("%w: tid %d has a timer slack of %d ns (PR_SET_TIMERSLACK), not the default %d", ErrUnsupported, tid, slack, defaultTimerSlack)
	}
	return nil
}

// addDeferredSignals adds to each thread's queue the signals that the
// tracer took off it while it ran an injection or a step: they were
// pending, and a restore must queue them again. It asks for them on the
// tracer thread: 1,000 trips to it took 69 ms.
func (d *dumper) addDeferredSignals() {
	d.tr.Run(func() error {
		for i, tid := range d.tids() {
			q := d.threads[i].ThreadCore.SignalsP
			q.Signals = append(q.Signals, signalQueue(d.tr.DeferredSignals(tid)).Signals...)
		}
		return nil
	})
}

// signalQueue turns the siginfos ptrace peeked into the image's queue.
func signalQueue(b []byte) *pb.SignalQueueEntry {
	q := &pb.SignalQueueEntry{}
	for len(b) >= kernel.SiginfoSize {
		q.Signals = append(q.Signals, &pb.SiginfoEntry{Siginfo: b[:kernel.SiginfoSize]})
		b = b[kernel.SiginfoSize:]
	}
	return q
}

// dumpExitedLeader makes the core of a thread group leader that has
// exited while the other threads run on. CRIU's images have no state for
// a thread that has exited: its core is that of a thread about to exit as
// it did, with SYS_exit and its exit code (which the parent's wait reports
// if the last thread exits as it did), at a system call instruction of
// the process's code, every signal blocked so that none is handled on its
// behalf first. Restored so, it becomes the zombie leader again while the
// other threads run on. Its registers are otherwise the view thread's,
// which hold valid segments.
func (d *dumper) dumpExitedLeader(tid int) (*pb.CoreEntry, error) {
	if len(d.seccomp) > 0 {
		return nil, fmt.Errorf("%w: the thread group leader has exited and the process is under seccomp, whose filters a restored leader would need to exit again", ErrUnsupported)
	}
	if sig := d.tr.GroupStop(); sig != 0 {
		// The restore stops the process before its threads run: the
		// leader would be stopped, not exited, until a SIGCONT.
		return nil, fmt.Errorf("%w: the thread group leader has exited and the process is stopped (%v), which a restored leader would be before it exits again", ErrUnsupported, sig)
	}
	stat, err := proc.ReadTaskStat(d.pid, tid)
	if err != nil {
		return nil, err
	}
	if stat.State != 'Z' || stat.ExitCode&0x7f != 0 {
		return nil, fmt.Errorf("tid %d: the leader is in state %c with exit status %#x, not exited", tid, stat.State, stat.ExitCode)
	}
	code := uint64(stat.ExitCode>>8) & 0xff
	site, err := d.tr.SyscallSite()
	if err != nil {
		return nil, fmt.Errorf("%w: the thread group leader has exited, and a restore needs a system call instruction in the process's code to exit it again: %w", ErrUnsupported, err)
	}
	regs, err := d.tr.GetRegs(d.view)
	if err != nil {
		return nil, err
	}
	regs = ptrace.SyscallRegs(regs, site, unix.SYS_EXIT, code)
	xstate, err := d.tr.GetRegset(d.view, unix.NT_X86_XSTATE)
	if err != nil {
		return nil, err
	}
	fpregs, err := d.host.XStateToImage(xstate)
	if err != nil {
		return nil, fmt.Errorf("tid %d: %w", d.view, err)
	}
	d.log.Info("the thread group leader has exited: a restore makes it exit again", "tid", tid, "code", code, "site", fmt.Sprintf("%#x", site))
	return &pb.CoreEntry{
		Mtype: pb.CoreEntry_X86_64,
		ThreadInfo: &pb.ThreadInfoX86{
			ClearTidAddr: 0,
			Gpregs:       cpu.RegsToImage(&regs),
			Fpregs:       fpregs,
		},
		ThreadCore: &pb.ThreadCoreEntry{
			FutexRla:    0,
			FutexRlaLen: 0,
			SchedNice:   pb.Int32(int32(stat.Nice)),
			SchedPolicy: pb.Uint32(stat.Policy),
			SchedPrio:   pb.Uint32(stat.RTPriority),
			BlkSigset:   pb.Uint64(^uint64(0)),
			Sas:         &pb.ThreadSasEntry{SsSp: 0, SsFlags: kernel.SsDisable, SsSize: 0},
			Comm:        pb.String(stat.Comm),
			SignalsP:    &pb.SignalQueueEntry{},
			PdeathSig:   pb.Uint32(0),
		},
	}, nil
}

// ioRingFdRegMax is IO_RINGFD_REG_MAX (io_uring/tctx.h): how many ring
// descriptors a thread may register (IORING_REGISTER_RING_FDS).
const ioRingFdRegMax = 16

// askRegisteredRings asks the thread of a whether it registered an
// io_uring's descriptor at each index it may (IORING_REGISTER_RING_FDS):
// io_uring_enter with IORING_ENTER_REGISTERED_RING and nothing to do
// returns at once for one it did, and fails with EBADF for an index it
// did not, EINVAL if it registered none (measured on Linux 6.18). It
// returns the calls' indexes.
func askRegisteredRings(a *asks) []int {
	calls := make([]int, ioRingFdRegMax)
	for i := range calls {
		calls[i] = a.ask("registered io_uring descriptor", true, unix.SYS_IO_URING_ENTER, uint64(i), 0, 0, ioRingEnterRegisteredRing, 0, 0)
	}
	return calls
}

// ioRingEnterRegisteredRing is IORING_ENTER_REGISTERED_RING.
const ioRingEnterRegisteredRing = 1 << 4

// refuseRegisteredRings refuses a thread that registered an io_uring's
// descriptor: the restore does not register it again, and the program
// would submit through an index that names nothing.
func refuseRegisteredRings(a *asks, tid int, calls []int) error {
	for i, c := range calls {
		err := a.calls[c].Failed()
		if errors.Is(err, unix.EBADF) || errors.Is(err, unix.EINVAL) {
			continue
		}
		return fmt.Errorf("%w: tid %d registered an io_uring descriptor at index %d (IORING_REGISTER_RING_FDS), which cryo does not restore", ErrUnsupported, tid, i)
	}
	return nil
}
