// posixtimers: a checkpoint/restore subject with POSIX timers
// (timer_create), made with the raw system calls so that each is known
// by its kernel id:
//   id 0  CLOCK_MONOTONIC, SIGRTMIN to the process, value 0x1111, every 20 ms
//   id 1  deleted: a gap in the ids
//   id 2  CLOCK_REALTIME, SIGRTMIN+1 to the second thread (SIGEV_THREAD_ID),
//         value 0x2222, every 30 ms
//   id 3  CLOCK_BOOTTIME, SIGEV_NONE, in an hour and then every hour
//   id 4  CLOCK_MONOTONIC, SIGRTMIN+2, never armed
//   id 5  CLOCK_PROCESS_CPUTIME_ID, SIGRTMIN+3, in an hour of CPU time,
//         then every 2 s of it
// With the argument "threadcpu", also
//   id 6  CLOCK_THREAD_CPUTIME_ID, SIGEV_NONE, never armed
// which a dump must refuse (the kernel does not say which thread's).
// With "restoreids", it turns PR_TIMER_CREATE_RESTORE_IDS on, which a
// dump must refuse too. With "block", SIGRTMIN stays blocked, and timer 0's signal pending,
// until a SIGUSR1.
//
// Its handlers check every signal's si_code, si_value, si_timerid and,
// for id 2, the thread that takes it. Every PERIOD_MS it checks with
// timer_gettime that each timer keeps its interval and is armed or not
// as made, and that id 1 is no timer, then prints
//   tick N mono_ns=T fired0=A fired2=B ok
// A and B counting the signals of timers 0 and 2. Any mismatch prints
// FAIL.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20
#define HOUR 3600

static atomic_long fired0, fired2;
static atomic_int bad; // the first wrong signal: 1 value, 2 timer id, 3 thread, 4 code
static atomic_int worker_tid;
static volatile sig_atomic_t unblock;

static void on_usr1(int sig) {
	(void)sig;
	unblock = 1;
}

static void record_bad(int why) {
	int zero = 0;
	atomic_compare_exchange_strong(&bad, &zero, why);
}

static void on_timer(int sig, siginfo_t *si, void *uc) {
	(void)uc;
	int rt = sig - SIGRTMIN;
	long want_value = rt == 0 ? 0x1111 : 0x2222;
	int want_id = rt == 0 ? 0 : 2;
	if (si->si_code != SI_TIMER)
		record_bad(4);
	else if ((long)si->si_value.sival_ptr != want_value)
		record_bad(1);
	else if (si->si_timerid != want_id)
		record_bad(2);
	else if (rt == 1 && gettid() != atomic_load(&worker_tid))
		record_bad(3);
	atomic_fetch_add(rt == 0 ? &fired0 : &fired2, 1);
}

static void *worker(void *arg) {
	(void)arg;
	atomic_store(&worker_tid, gettid());
	for (;;) {
		struct timespec d = {0, 5000000};
		nanosleep(&d, NULL);
	}
	return NULL;
}

// make creates a timer and fails unless the kernel gives it id want.
static void make(int want, clockid_t clock, int notify, int sig, long value, int tid) {
	struct sigevent sev;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = notify;
	sev.sigev_signo = sig;
	sev.sigev_value.sival_ptr = (void *)value;
	sev._sigev_un._tid = tid;
	int id = -1;
	if (syscall(SYS_timer_create, clock, &sev, &id) != 0)
		fail("timer_create %d: %s", want, strerror(errno));
	if (id != want)
		fail("timer_create gave id %d, want %d", id, want);
}

static void arm(int id, long sec, long nsec, long isec, long insec) {
	struct itimerspec v = {{isec, insec}, {sec, nsec}};
	if (syscall(SYS_timer_settime, id, 0, &v, NULL) != 0)
		fail("timer_settime %d: %s", id, strerror(errno));
}

// check fails unless timer id has interval isec.insec and, if armed, a
// value of at most max seconds; unarmed, none.
static void check(int id, long isec, long insec, int armed, long max) {
	struct itimerspec v;
	if (syscall(SYS_timer_gettime, id, &v) != 0)
		fail("timer_gettime %d: %s", id, strerror(errno));
	if (v.it_interval.tv_sec != isec || v.it_interval.tv_nsec != insec)
		fail("timer %d interval %ld.%09ld, want %ld.%09ld", id, (long)v.it_interval.tv_sec,
		     v.it_interval.tv_nsec, isec, insec);
	int is_armed = v.it_value.tv_sec != 0 || v.it_value.tv_nsec != 0;
	if (is_armed != armed || v.it_value.tv_sec > max)
		fail("timer %d value %ld.%09ld, want %s at most %lds", id, (long)v.it_value.tv_sec, v.it_value.tv_nsec,
		     armed ? "armed" : "disarmed", max);
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	int threadcpu = argc > 1 && strcmp(argv[1], "threadcpu") == 0;
	int block = argc > 1 && strcmp(argv[1], "block") == 0;
	// PR_TIMER_CREATE_RESTORE_IDS and _ON (Linux 6.17), after the timers
	// are made.
	int restoreids = argc > 1 && strcmp(argv[1], "restoreids") == 0;
	sigset_t rtmin;
	sigemptyset(&rtmin);
	sigaddset(&rtmin, SIGRTMIN);
	// Before the thread starts, which inherits the mask.
	if (block && sigprocmask(SIG_BLOCK, &rtmin, NULL) != 0)
		fail("sigprocmask: %s", strerror(errno));
	struct sigaction usr1 = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
	sigemptyset(&usr1.sa_mask);
	if (sigaction(SIGUSR1, &usr1, NULL) != 0)
		fail("sigaction: %s", strerror(errno));
	struct sigaction sa = {.sa_sigaction = on_timer, .sa_flags = SA_SIGINFO | SA_RESTART};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGRTMIN, &sa, NULL) != 0 || sigaction(SIGRTMIN + 1, &sa, NULL) != 0)
		fail("sigaction: %s", strerror(errno));
	pthread_t t;
	if (pthread_create(&t, NULL, worker, NULL) != 0)
		fail("pthread_create");
	while (atomic_load(&worker_tid) == 0)
		usleep(1000);

	make(0, CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN, 0x1111, 0);
	make(1, CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN, 0, 0);
	make(2, CLOCK_REALTIME, SIGEV_THREAD_ID, SIGRTMIN + 1, 0x2222, atomic_load(&worker_tid));
	make(3, CLOCK_BOOTTIME, SIGEV_NONE, 0, 0x3333, 0);
	make(4, CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 2, 0x4444, 0);
	make(5, CLOCK_PROCESS_CPUTIME_ID, SIGEV_SIGNAL, SIGRTMIN + 3, 0x5555, 0);
	if (threadcpu)
		make(6, CLOCK_THREAD_CPUTIME_ID, SIGEV_NONE, 0, 0, 0);
	if (syscall(SYS_timer_delete, 1) != 0)
		fail("timer_delete 1: %s", strerror(errno));
	arm(0, 0, PERIOD_MS * 1000000L, 0, PERIOD_MS * 1000000L);
	arm(2, 0, 30000000L, 0, 30000000L);
	arm(3, HOUR, 0, HOUR, 0);
	arm(5, HOUR, 0, 2, 0);
	if (restoreids && prctl(77, 1, 0, 0, 0) != 0)
		fail("PR_TIMER_CREATE_RESTORE_IDS: %s", strerror(errno));
	printf("ready worker=%d sigrtmin=%d\n", atomic_load(&worker_tid), SIGRTMIN);

	for (unsigned long tick = 0;; tick++) {
		if (unblock && block) {
			block = 0;
			if (sigprocmask(SIG_UNBLOCK, &rtmin, NULL) != 0)
				fail("sigprocmask: %s", strerror(errno));
		}
		if (atomic_load(&bad))
			fail("a timer signal was wrong (%d: 1 value, 2 timer id, 3 thread, 4 code)", atomic_load(&bad));
		check(0, 0, PERIOD_MS * 1000000L, 1, 0);
		check(2, 0, 30000000L, 1, 0);
		check(3, HOUR, 0, 1, HOUR);
		check(4, 0, 0, 0, 0);
		check(5, 2, 0, 1, HOUR);
		struct itimerspec v;
		if (syscall(SYS_timer_gettime, 1, &v) == 0 || errno != EINVAL)
			fail("timer 1, deleted, is there again");
		struct timespec m;
		clock_gettime(CLOCK_MONOTONIC, &m);
		printf("tick %lu mono_ns=%lld fired0=%ld fired2=%ld ok\n", tick, m.tv_sec * 1000000000LL + m.tv_nsec,
		       atomic_load(&fired0), atomic_load(&fired2));
		struct timespec d = {0, PERIOD_MS * 1000000L};
		while (nanosleep(&d, &d) != 0 && errno == EINTR)
			;
	}
}
