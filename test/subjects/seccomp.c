// seccomp: a checkpoint/restore subject under seccomp. Its first argument
// says how:
//   stacked  two filters, the second installed with SECCOMP_FILTER_FLAG_LOG
//            (A: getppid fails with EPERM, getsid with ENOENT; B, newer:
//            getppid fails with EACCES, which wins, being the newer)
//   threads  a thread started first installs a filter of its own (C:
//            getppid fails with ENOENT); the main thread then installs A
//            and B, and a thread started after them inherits them and adds
//            D (getsid fails with EBADF)
//   tsync    two threads, then A and B with SECCOMP_FILTER_FLAG_TSYNC: every
//            thread has them. On SIGUSR1 the main thread installs E (getpgid
//            fails with EPERM) with SECCOMP_FILTER_FLAG_TSYNC, which must
//            succeed; then every thread has E too
//   strict   a thread in strict mode, woken by the main thread through a
//            pipe once a tick, which it answers by counting
//   strictleader
//            the main thread in strict mode, another thread ticking
//   nommap   one filter that fails mmap with EPERM and kills the process
//            for munmap, mprotect and prctl, which cryo injects
//   nonnp    A and B installed without no_new_privs, which takes
//            CAP_SYS_ADMIN: the subject, started as root, then becomes
//            nobody, with no capability left
//   fork     A, then a child that adds D: the parent has A, the child A
//            and D, and checks them as a worker does; the parent prints
//            "ready child=PID" first
//   big      one filter of more than 4 KiB: 400 rules for system calls that
//            do not exist, then getppid fails with EACCES
//   listener one filter installed with SECCOMP_FILTER_FLAG_NEW_LISTENER
//            that hands getsid, which the subject does not call, to its
//            listener; the listener is closed
// Filters are installed with no_new_privs but in nonnp. With the arguments
//   exec PROGRAM ARGS...
// it installs a filter that allows everything and executes PROGRAM: a
// program run under seccomp. Every PERIOD_MS the main thread
// checks that each thread gets from its filters exactly what it should
// (every thread checks itself between ticks) and prints
//   tick N pid=P tsync=T ok
// with T 2 once E is installed, 0 before.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <grp.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20
#define MAX_RULES 512

// A rule makes system call nr return ret (a SECCOMP_RET_* action).
struct rule {
	int nr;
	unsigned ret;
};

#define ERRNO(e) (SECCOMP_RET_ERRNO | (e))

static const struct rule filter_a[] = {{SYS_getppid, ERRNO(EPERM)}, {SYS_getsid, ERRNO(ENOENT)}, {-1, 0}};
static const struct rule filter_b[] = {{SYS_getppid, ERRNO(EACCES)}, {-1, 0}};
static const struct rule filter_c[] = {{SYS_getppid, ERRNO(ENOENT)}, {-1, 0}};
static const struct rule filter_d[] = {{SYS_getsid, ERRNO(EBADF)}, {-1, 0}};
static const struct rule filter_e[] = {{SYS_getpgid, ERRNO(EPERM)}, {-1, 0}};
static const struct rule filter_listener[] = {{SYS_getsid, SECCOMP_RET_USER_NOTIF}, {-1, 0}};
static const struct rule filter_nommap[] = {
	{SYS_mmap, ERRNO(EPERM)},
	{SYS_munmap, SECCOMP_RET_KILL_PROCESS},
	{SYS_mprotect, SECCOMP_RET_KILL_PROCESS},
	{SYS_prctl, SECCOMP_RET_KILL_PROCESS},
	{-1, 0},
};

// install installs a filter made of rules, every other call allowed.
static long install(const struct rule *rules, unsigned flags) {
	struct sock_filter prog[4 + 2 * MAX_RULES + 1];
	int n = 0;
	prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
	prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
	prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
	for (const struct rule *r = rules; r->nr >= 0; r++) {
		prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, r->nr, 0, 1);
		prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, r->ret);
	}
	prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog fprog = {.len = n, .filter = prog};
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
}

static void must_install(const struct rule *rules, unsigned flags) {
	if (install(rules, flags) != 0)
		fail("install a filter: %s", strerror(errno));
}

// An expectation: system call nr (no arguments that matter) fails with
// err, or succeeds if err is 0.
struct expect {
	int nr;
	int err;
};

// check fails the subject unless each call of want gives what it says.
static void check(const char *who, const struct expect *want) {
	for (; want->nr >= 0; want++) {
		errno = 0;
		long r = syscall(want->nr, 0);
		int err = r < 0 ? errno : 0;
		if (err != want->err)
			fail("%s: system call %d gave %ld errno %d (%s), want errno %d", who, want->nr, r, err, strerror(err), want->err);
	}
}

// What each filter chain gives.
static const struct expect none[] = {{SYS_getppid, 0}, {SYS_getsid, 0}, {SYS_getpgid, 0}, {SYS_getpid, 0}, {-1, 0}};
static const struct expect but_getsid[] = {{SYS_getppid, 0}, {SYS_getpgid, 0}, {SYS_getpid, 0}, {-1, 0}};
static const struct expect big_want[] = {{SYS_getppid, EACCES}, {SYS_getsid, 0}, {SYS_getpgid, 0}, {SYS_getpid, 0}, {-1, 0}};
static const struct expect chain_a[] = {{SYS_getppid, EPERM}, {SYS_getsid, ENOENT}, {SYS_getpgid, 0}, {SYS_getpid, 0}, {-1, 0}};
static const struct expect chain_ad[] = {{SYS_getppid, EPERM}, {SYS_getsid, EBADF}, {SYS_getpgid, 0}, {SYS_getpid, 0}, {-1, 0}};
static const struct expect chain_ab[] = {{SYS_getppid, EACCES}, {SYS_getsid, ENOENT}, {SYS_getpgid, 0}, {SYS_getpid, 0}, {-1, 0}};
static const struct expect chain_abe[] = {{SYS_getppid, EACCES}, {SYS_getsid, ENOENT}, {SYS_getpgid, EPERM}, {SYS_getpid, 0}, {-1, 0}};
static const struct expect chain_c[] = {{SYS_getppid, ENOENT}, {SYS_getsid, 0}, {SYS_getpgid, 0}, {SYS_getpid, 0}, {-1, 0}};
static const struct expect chain_abd[] = {{SYS_getppid, EACCES}, {SYS_getsid, EBADF}, {SYS_getpgid, 0}, {SYS_getpid, 0}, {-1, 0}};

// armed is set once the main thread has installed its filters: the
// workers check from then on.
static volatile int armed;

// tsync is 1 while E is being installed on SIGUSR1, when the workers do
// not check, and 2 once it is: then they expect it.
static volatile int tsync;

static void nap(long ms) {
	struct timespec d = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&d, &d) != 0 && errno == EINTR)
		;
}

// A worker checks what its chain gives, between ticks.
struct worker {
	const struct rule *own; // installed by the worker itself, or NULL
	const struct expect *want;
	volatile int ready;
};

static void *work(void *arg) {
	struct worker *w = arg;
	if (w->own)
		must_install(w->own, 0);
	w->ready = 1;
	for (;;) {
		if (armed && tsync != 1)
			check("worker", tsync == 2 ? chain_abe : w->want);
		nap(PERIOD_MS / 2);
	}
	return NULL;
}

static void start(struct worker *w) {
	pthread_t t;
	if (pthread_create(&t, NULL, work, w) != 0)
		fail("pthread_create");
	while (!w->ready)
		nap(1);
}

// The strict thread answers each byte of the pipe by counting it.
static int strict_pipe[2];
static volatile unsigned long strict_count;

static void *strict_worker(void *arg) {
	(void)arg;
	// Only read, write, exit and sigreturn from here on; the thread never
	// returns or takes a signal (every one is blocked).
	if (syscall(SYS_prctl, PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0) != 0)
		fail("PR_SET_SECCOMP strict: %s", strerror(errno));
	for (;;) {
		char c;
		if (syscall(SYS_read, strict_pipe[0], &c, 1) == 1)
			strict_count++;
	}
	return NULL;
}

static volatile sig_atomic_t usr1;

// mode is the first argument; want is what the main thread's filters give.
static const char *mode;
static const struct expect *want = chain_ab;

static void on_usr1(int sig) {
	(void)sig;
	usr1 = 1;
}

// ticker checks the filters of its thread and prints a tick, forever.
static void *ticker(void *arg) {
	(void)arg;
	unsigned long woken = 0;
	for (unsigned long tick = 0;; tick++) {
		if (usr1) {
			usr1 = 0;
			tsync = 1;
			long r = install(filter_e, SECCOMP_FILTER_FLAG_TSYNC);
			if (r != 0)
				fail("install with SECCOMP_FILTER_FLAG_TSYNC: %ld errno %d", r, errno);
			tsync = 2;
		}
		check("main", tsync == 2 ? chain_abe : want);
		if (strcmp(mode, "nommap") == 0) {
			void *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p != MAP_FAILED || errno != EPERM)
				fail("mmap gave %p errno %d, want EPERM", p, errno);
		}
		if (strict_pipe[1]) {
			// The strict thread must count each byte, at once.
			if (write(strict_pipe[1], "x", 1) != 1)
				fail("write to the strict thread: %s", strerror(errno));
			woken++;
			for (int i = 0; strict_count != woken; i++) {
				if (i == 500)
					fail("the strict thread counted %lu of %lu", strict_count, woken);
				nap(1);
			}
		}
		printf("tick %lu pid=%d tsync=%d ok\n", tick, getpid(), tsync);
		nap(PERIOD_MS);
	}
	return NULL;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		fail("usage: seccomp stacked|threads|tsync|strict|strictleader|nommap|nonnp|fork|big|listener");
	mode = argv[1];
	if (strcmp(mode, "exec") == 0 && argc > 2) {
		static const struct rule allow[] = {{-1, 0}};
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
			fail("PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		must_install(allow, 0);
		execv(argv[2], argv + 2);
		fail("exec %s: %s", argv[2], strerror(errno));
	}
	struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		fail("sigaction: %s", strerror(errno));
	if (strcmp(mode, "nonnp") != 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		fail("PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	static struct worker first, second;
	if (strcmp(mode, "stacked") == 0) {
		must_install(filter_a, 0);
		must_install(filter_b, SECCOMP_FILTER_FLAG_LOG);
	} else if (strcmp(mode, "threads") == 0) {
		first = (struct worker){.own = filter_c, .want = chain_c};
		start(&first);
		must_install(filter_a, 0);
		must_install(filter_b, 0);
		second = (struct worker){.own = filter_d, .want = chain_abd};
		start(&second);
	} else if (strcmp(mode, "tsync") == 0) {
		first = second = (struct worker){.want = chain_ab};
		start(&first);
		start(&second);
		must_install(filter_a, SECCOMP_FILTER_FLAG_TSYNC);
		must_install(filter_b, SECCOMP_FILTER_FLAG_TSYNC);
	} else if (strcmp(mode, "strict") == 0) {
		want = none;
		if (pipe(strict_pipe) != 0)
			fail("pipe: %s", strerror(errno));
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		pthread_t t;
		if (pthread_create(&t, NULL, strict_worker, NULL) != 0)
			fail("pthread_create");
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	} else if (strcmp(mode, "nonnp") == 0) {
		must_install(filter_a, 0);
		must_install(filter_b, 0);
		become_nobody();
	} else if (strcmp(mode, "fork") == 0) {
		must_install(filter_a, 0);
		want = chain_a;
		pid_t child = fork();
		if (child < 0)
			fail("fork: %s", strerror(errno));
		if (child == 0) {
			if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
				fail("PR_SET_PDEATHSIG: %s", strerror(errno));
			must_install(filter_d, 0);
			for (;;) {
				check("child", chain_ad);
				nap(PERIOD_MS / 2);
			}
		}
		printf("ready child=%d\n", child);
	} else if (strcmp(mode, "big") == 0) {
		static struct rule big[402];
		for (int i = 0; i < 400; i++)
			big[i] = (struct rule){1000 + i, ERRNO(EPERM)};
		big[400] = (struct rule){SYS_getppid, ERRNO(EACCES)};
		big[401] = (struct rule){-1, 0};
		must_install(big, 0);
		want = big_want;
	} else if (strcmp(mode, "listener") == 0) {
		long fd = install(filter_listener, SECCOMP_FILTER_FLAG_NEW_LISTENER);
		if (fd < 0)
			fail("install a filter with a listener: %s", strerror(errno));
		close(fd);
		want = but_getsid;
	} else if (strcmp(mode, "strictleader") == 0) {
		want = none;
	} else if (strcmp(mode, "nommap") == 0) {
		must_install(filter_nommap, 0);
		want = none;
	} else {
		fail("unknown mode %s", mode);
	}
	armed = 1;
	if (strcmp(mode, "strictleader") == 0) {
		// The main thread goes strict; another ticks.
		if (pipe(strict_pipe) != 0)
			fail("pipe: %s", strerror(errno));
		pthread_t t;
		if (pthread_create(&t, NULL, ticker, NULL) != 0)
			fail("pthread_create");
		sigset_t all;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, NULL);
		strict_worker(NULL);
	}
	ticker(NULL);
}
