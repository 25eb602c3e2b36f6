package kernel

// IOUringParams mirrors struct io_uring_params
// (include/uapi/linux/io_uring.h): what io_uring_setup(2) is given, and
// the geometry and offsets into the rings it writes back.
type IOUringParams struct {
	SqEntries    uint32
	CqEntries    uint32
	Flags        uint32
	SqThreadCPU  uint32
	SqThreadIdle uint32
	Features     uint32
	WqFd         uint32
	Resv         [3]uint32
	SqOff        IOSqringOffsets
	CqOff        IOCqringOffsets
}

// IOSqringOffsets mirrors struct io_sqring_offsets.
type IOSqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

// IOCqringOffsets mirrors struct io_cqring_offsets.
type IOCqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

// IOUringParamsSize is sizeof(struct io_uring_params).
const IOUringParamsSize = 120

// The setup flags (IORING_SETUP_*), the features io_uring_setup reports
// (IORING_FEAT_*), the mmap offsets of the rings and the SQEs
// (IORING_OFF_*), io_uring_enter's flags and io_uring_register's opcodes
// cryo uses, from include/uapi/linux/io_uring.h.
const (
	IORingSetupIOPoll       = 1 << 0
	IORingSetupSQPoll       = 1 << 1
	IORingSetupSQAff        = 1 << 2
	IORingSetupCQSize       = 1 << 3
	IORingSetupClamp        = 1 << 4
	IORingSetupAttachWQ     = 1 << 5
	IORingSetupRDisabled    = 1 << 6
	IORingSetupSubmitAll    = 1 << 7
	IORingSetupCoopTaskrun  = 1 << 8
	IORingSetupTaskrunFlag  = 1 << 9
	IORingSetupSQE128       = 1 << 10
	IORingSetupCQE32        = 1 << 11
	IORingSetupSingleIssuer = 1 << 12
	IORingSetupDeferTaskrun = 1 << 13
	IORingSetupNoMmap       = 1 << 14
	IORingSetupRegisteredFd = 1 << 15
	IORingSetupNoSQArray    = 1 << 16

	IORingFeatSingleMmap = 1 << 0
	IORingFeatExtArg     = 1 << 8

	IORingOffSQRing = 0
	IORingOffCQRing = 0x8000000
	IORingOffSQEs   = 0x10000000

	IORingEnterGetEvents = 1 << 0
	IORingEnterExtArg    = 1 << 3

	IORingRegisterEventfd           = 4
	IORingRegisterProbe             = 8
	IORingRegisterPersonality       = 9
	IORingUnregisterPersonality     = 10
	IORingRegisterPbufStatus        = 26
	IORingRegisterUseRegisteredRing = 1 << 31
)

// IOUringGeteventsArg mirrors struct io_uring_getevents_arg, the argument
// of io_uring_enter with IORING_ENTER_EXT_ARG.
type IOUringGeteventsArg struct {
	Sigmask     uint64
	SigmaskSz   uint32
	MinWaitUsec uint32
	Ts          uint64
}

// IOUringBufStatus mirrors struct io_uring_buf_status
// (IORING_REGISTER_PBUF_STATUS).
type IOUringBufStatus struct {
	BufGroup uint32
	Head     uint32
	Resv     [8]uint32
}

// IOUringMaxBufGroup is the largest buffer group id (a u16).
const IOUringMaxBufGroup = 1<<16 - 1
