package kernel

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// sysNames are the names of the system calls cryo injects or makes, for
// messages: "openat", not "syscall 257".
var sysNames = map[int]string{
	unix.SYS_BRK: "brk", unix.SYS_CAPSET: "capset", unix.SYS_CHDIR: "chdir",
	unix.SYS_CLOCK_GETTIME: "clock_gettime", unix.SYS_CLONE3: "clone3", unix.SYS_CLOSE: "close",
	unix.SYS_CLOSE_RANGE: "close_range", unix.SYS_DUP3: "dup3", unix.SYS_EPOLL_CREATE1: "epoll_create1",
	unix.SYS_EPOLL_CTL: "epoll_ctl", unix.SYS_EVENTFD2: "eventfd2", unix.SYS_EXIT: "exit", unix.SYS_EXIT_GROUP: "exit_group",
	unix.SYS_FANOTIFY_INIT: "fanotify_init", unix.SYS_FANOTIFY_MARK: "fanotify_mark",
	unix.SYS_INOTIFY_INIT1: "inotify_init1", unix.SYS_INOTIFY_ADD_WATCH: "inotify_add_watch",
	unix.SYS_FCHDIR: "fchdir", unix.SYS_FCHMOD: "fchmod", unix.SYS_FCHOWN: "fchown", unix.SYS_FCNTL: "fcntl",
	unix.SYS_FLOCK: "flock", unix.SYS_FTRUNCATE: "ftruncate", unix.SYS_GETITIMER: "getitimer",
	unix.SYS_GETCPU: "getcpu", unix.SYS_GETPID: "getpid", unix.SYS_IOPRIO_GET: "ioprio_get", unix.SYS_IOPRIO_SET: "ioprio_set", unix.SYS_GETSOCKOPT: "getsockopt", unix.SYS_GET_ROBUST_LIST: "get_robust_list", unix.SYS_IOCTL: "ioctl",
	unix.SYS_IO_SETUP: "io_setup", unix.SYS_IO_SUBMIT: "io_submit",
	unix.SYS_IO_URING_SETUP: "io_uring_setup", unix.SYS_IO_URING_ENTER: "io_uring_enter", unix.SYS_IO_URING_REGISTER: "io_uring_register",
	unix.SYS_KCMP: "kcmp", unix.SYS_LSEEK: "lseek", unix.SYS_MADVISE: "madvise",
	unix.SYS_MEMBARRIER: "membarrier", unix.SYS_MEMFD_CREATE: "memfd_create", unix.SYS_MKNODAT: "mknodat",
	unix.SYS_MLOCK: "mlock", unix.SYS_MLOCK2: "mlock2", unix.SYS_MMAP: "mmap", unix.SYS_MPROTECT: "mprotect", unix.SYS_SHMAT: "shmat",
	unix.SYS_SEMGET: "semget", unix.SYS_SEMCTL: "semctl", unix.SYS_MSGGET: "msgget", unix.SYS_MSGCTL: "msgctl",
	unix.SYS_MSGSND: "msgsnd", unix.SYS_MSGRCV: "msgrcv", unix.SYS_SEMOP: "semop", unix.SYS_SEMTIMEDOP: "semtimedop",
	unix.SYS_MREMAP: "mremap", unix.SYS_MUNMAP: "munmap", unix.SYS_NANOSLEEP: "nanosleep", unix.SYS_CLOCK_NANOSLEEP: "clock_nanosleep", unix.SYS_OPENAT: "openat",
	unix.SYS_PIDFD_GETFD: "pidfd_getfd", unix.SYS_PIDFD_OPEN: "pidfd_open", unix.SYS_RT_SIGTIMEDWAIT: "rt_sigtimedwait",
	unix.SYS_SCHED_GETSCHEDULER: "sched_getscheduler", unix.SYS_PERSONALITY: "personality", unix.SYS_PIPE2: "pipe2", unix.SYS_RECVMSG: "recvmsg", unix.SYS_SOCKETPAIR: "socketpair", unix.SYS_PRCTL: "prctl", unix.SYS_PTRACE: "ptrace",
	unix.SYS_PRLIMIT64: "prlimit64", unix.SYS_RSEQ: "rseq", unix.SYS_RT_SIGACTION: "rt_sigaction",
	unix.SYS_RT_SIGPROCMASK: "rt_sigprocmask", unix.SYS_RT_SIGQUEUEINFO: "rt_sigqueueinfo",
	unix.SYS_RT_TGSIGQUEUEINFO: "rt_tgsigqueueinfo", unix.SYS_SCHED_SETSCHEDULER: "sched_setscheduler",
	unix.SYS_GET_MEMPOLICY: "get_mempolicy", unix.SYS_SET_MEMPOLICY: "set_mempolicy",
	unix.SYS_SETFSGID: "setfsgid", unix.SYS_SETFSUID: "setfsuid", unix.SYS_SETGROUPS: "setgroups",
	unix.SYS_SETITIMER: "setitimer", unix.SYS_SETPGID: "setpgid", unix.SYS_SETPRIORITY: "setpriority",
	unix.SYS_SECCOMP: "seccomp", unix.SYS_SETRESGID: "setresgid", unix.SYS_SETRESUID: "setresuid", unix.SYS_SETSID: "setsid",
	unix.SYS_SET_ROBUST_LIST: "set_robust_list", unix.SYS_SET_TID_ADDRESS: "set_tid_address",
	unix.SYS_SIGALTSTACK: "sigaltstack", unix.SYS_TIMER_CREATE: "timer_create", unix.SYS_TIMER_DELETE: "timer_delete",
	unix.SYS_TIMER_GETOVERRUN: "timer_getoverrun", unix.SYS_TIMER_GETTIME: "timer_gettime",
	unix.SYS_TIMER_SETTIME: "timer_settime", unix.SYS_UMASK: "umask", unix.SYS_UNSHARE: "unshare",
	unix.SYS_UNAME: "uname", unix.SYS_SETHOSTNAME: "sethostname", unix.SYS_SETDOMAINNAME: "setdomainname",
	unix.SYS_SIGNALFD4: "signalfd4", unix.SYS_TIMERFD_CREATE: "timerfd_create", unix.SYS_TIMERFD_SETTIME: "timerfd_settime",
	unix.SYS_USERFAULTFD: "userfaultfd", unix.SYS_WAIT4: "wait4", unix.SYS_WRITE: "write", unix.SYS_PWRITE64: "pwrite64",
}

// SyscallName names system call nr, or says its number if cryo does not
// know it.
func SyscallName(nr int) string {
	if n, ok := sysNames[nr]; ok {
		return n
	}
	return "syscall " + strconv.Itoa(nr)
}
