package restore

// InIDOrder makes a restore create POSIX timers as on a kernel without
// PR_TIMER_CREATE_RESTORE_IDS.
var InIDOrder = &inIDOrder
