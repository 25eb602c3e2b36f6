package kernel

// TimerfdSetTicksRequest is TFD_IOC_SET_TICKS of
// include/uapi/linux/timerfd.h, _IOW('T', 0, __u64): it sets the
// expirations a timerfd holds for its next read (not 0). Kernels built
// without CONFIG_CHECKPOINT_RESTORE lack it.
const TimerfdSetTicksRequest = 0x40085400
