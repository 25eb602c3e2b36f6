package image

import (
	"fmt"

	"github.com/cryo-cr/cryo/internal/image/pb"
)

// ThreadExtra is what a thread holds beyond its core entry in CRIU's
// images, which cryo keeps in an image of its own, cryo-thread-extra.img,
// one record per thread that has any: the CPUs it may run on
// (sched_setaffinity), when they are not the dumping cryo's own (as
// taskset ties a process), and its I/O priority (ioprio_set, as ionice
// sets it); and on the record of a process's leader, what the process
// holds that CRIU's images do not: its memory-deny-write-execute flags
// (PR_SET_MDWE, as systemd's MemoryDenyWriteExecute= may set them) and
// its core dump filter (/proc/PID/coredump_filter), when it is not the
// dumping cryo's; and a thread's NUMA memory policy (set_mempolicy, as
// numactl --interleave sets it) when it has one, and its audit login
// UID when it is not its process's.
type ThreadExtra struct {
	TID uint32
	// CPUs is the mask, 64 CPUs a word, CPU 0 the lowest bit of the
	// first, as sched_getaffinity gives it; nil when not tied.
	CPUs []uint64
	// IOPrio is the I/O priority as ioprio_get gives it, class and data;
	// 0, the default (following the nice value), when none was set: the
	// class none has no data.
	IOPrio uint32
	// MDWE are the PR_SET_MDWE flags of the thread's process, on its
	// leader's record only.
	MDWE uint32
	// CoredumpFilter is the core dump filter of the thread's process, on
	// its leader's record only; nil when it was the dumping cryo's.
	CoredumpFilter *uint32
	// MemPolicy is the memory policy as get_mempolicy gives it, a mode
	// (MPOL_*) and its flags; 0, MPOL_DEFAULT, for none. MemNodes are its
	// nodes, 64 a word, node 0 the lowest bit of the first.
	MemPolicy uint32
	MemNodes  []uint64
	// LoginUID is the thread's audit login UID when it is not its
	// process's, which CRIU's core entry of the leader holds (loginuid).
	LoginUID *uint32
}

// MaxNodeWords bounds a ThreadExtra's nodes: 1,024 nodes, as the kernel's
// MAX_NUMNODES at most.
const MaxNodeWords = 16

// The modes and flags of a memory policy (include/uapi/linux/mempolicy.h):
// the modes below MPOL_MAX (7, since Linux 6.9), and MPOL_F_STATIC_NODES,
// MPOL_F_RELATIVE_NODES and MPOL_F_NUMA_BALANCING.
const (
	mpolModes = 7
	mpolFlags = 1<<15 | 1<<14 | 1<<13
)

// MaxCPUWords bounds a ThreadExtra's mask: 1,024 CPUs, as glibc's
// cpu_set_t.
const MaxCPUWords = 16

// ioprioClassMax is IOPRIO_CLASS_IDLE (include/uapi/linux/ioprio.h), the
// last class; the class is the top 3 of an I/O priority's 16 bits.
const ioprioClassMax = 3

// mdweFlags are the flags PR_SET_MDWE takes (include/uapi/linux/prctl.h):
// PR_MDWE_REFUSE_EXEC_GAIN and PR_MDWE_NO_INHERIT.
const mdweFlags = 3

// coredumpFilterMax has every bit of a core dump filter set (the
// kernel's MMF_DUMP_FILTER_BITS are 9).
const coredumpFilterMax = 1<<9 - 1

// message is x as a cryo.thread_extra_entry record.
func (x ThreadExtra) message() *pb.ThreadExtraEntry {
	m := &pb.ThreadExtraEntry{Tid: x.TID, Cpus: x.CPUs, CoredumpFilter: x.CoredumpFilter, Loginuid: x.LoginUID}
	if x.IOPrio != 0 {
		m.Ioprio = pb.Uint32(x.IOPrio)
	}
	if x.MDWE != 0 {
		m.Mdwe = pb.Uint32(x.MDWE)
	}
	if x.MemPolicy != 0 {
		m.Mempolicy, m.MempolicyNodes = pb.Uint32(x.MemPolicy), x.MemNodes
	}
	return m
}

func threadExtraOf(m *pb.ThreadExtraEntry) (ThreadExtra, error) {
	x := ThreadExtra{TID: m.GetTid(), CPUs: m.Cpus, IOPrio: m.GetIoprio(), MDWE: m.GetMdwe(), CoredumpFilter: m.CoredumpFilter,
		MemPolicy: m.GetMempolicy(), MemNodes: m.MempolicyNodes, LoginUID: m.Loginuid}
	if len(x.CPUs) > MaxCPUWords {
		return x, fmt.Errorf("%w: tid %d: a CPU mask of %d words, more than %d", ErrRecord, x.TID, len(x.CPUs), MaxCPUWords)
	}
	var any uint64
	for _, w := range x.CPUs {
		any |= w
	}
	switch {
	case len(x.CPUs) > 0 && any == 0:
		return x, fmt.Errorf("%w: tid %d: an empty CPU mask", ErrRecord, x.TID)
	case x.IOPrio>>13 > ioprioClassMax || x.IOPrio > 0xffff || x.IOPrio != 0 && x.IOPrio>>13 == 0:
		return x, fmt.Errorf("%w: tid %d: I/O priority %#x", ErrRecord, x.TID, x.IOPrio)
	case x.MDWE&^mdweFlags != 0:
		return x, fmt.Errorf("%w: tid %d: PR_SET_MDWE flags %#x", ErrRecord, x.TID, x.MDWE)
	case x.CoredumpFilter != nil && *x.CoredumpFilter > coredumpFilterMax:
		return x, fmt.Errorf("%w: tid %d: core dump filter %#x", ErrRecord, x.TID, *x.CoredumpFilter)
	case x.MemPolicy&^mpolFlags >= mpolModes || len(x.MemNodes) > MaxNodeWords || x.MemPolicy == 0 && len(x.MemNodes) > 0:
		return x, fmt.Errorf("%w: tid %d: memory policy %#x with %d words of nodes", ErrRecord, x.TID, x.MemPolicy, len(x.MemNodes))
	}
	return x, nil
}

// WriteThreadExtras writes cryo-thread-extra.img.
func (d *Dir) WriteThreadExtras(xs []ThreadExtra) error {
	return writeOwn(d, ThreadExtras, xs, ThreadExtra.message)
}

// ReadThreadExtras reads cryo-thread-extra.img; a checkpoint without it
// (one CRIU made, or an older cryo) gives an error wrapping
// fs.ErrNotExist.
func (d *Dir) ReadThreadExtras() ([]ThreadExtra, error) {
	return readOwn(d, ThreadExtras, threadExtraOf)
}
