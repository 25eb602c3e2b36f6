package kernel

// ShmLock is shmctl's SHM_LOCK command (<linux/shm.h>), which x/sys lacks:
// it locks a System V shared memory segment in memory.
const ShmLock = 11
