// sigqueue: a checkpoint/restore subject that keeps signals pending, with
// their siginfo, for a dump to record and a restore to queue again.
//
// It blocks SIGUSR2, SIGRTMIN and SIGRTMIN+1 in all its threads (its main
// thread and one that sleeps), so that whatever is sent of them stays
// queued, process-wide or for the main thread. Every PERIOD_MS it prints
//   tick N mono_ns=T pid=P pending=0xMASK ok
// with MASK the signals pending for the main thread or the process (bit
// N-1 for signal N). On SIGUSR1 it takes every pending one, in the order
// the kernel gives them, and prints one line each:
//   took sig=S code=C pid=P value=V
// then "took done", and goes on ticking.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_MS 20

static volatile sig_atomic_t drain;

static void on_usr1(int sig) {
	(void)sig;
	drain = 1;
}

static void *sleeper(void *arg) {
	(void)arg;
	for (;;) {
		struct timespec d = {0, 5000000};
		nanosleep(&d, NULL);
	}
	return NULL;
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	sigset_t held;
	sigemptyset(&held);
	sigaddset(&held, SIGUSR2);
	sigaddset(&held, SIGRTMIN);
	sigaddset(&held, SIGRTMIN + 1);
	// Before the thread starts, which inherits the mask.
	if (sigprocmask(SIG_BLOCK, &held, NULL) != 0) {
		printf("FAIL sigprocmask: %s\n", strerror(errno));
		return 1;
	}
	struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) != 0) {
		printf("FAIL sigaction: %s\n", strerror(errno));
		return 1;
	}
	pthread_t t;
	if (pthread_create(&t, NULL, sleeper, NULL) != 0) {
		printf("FAIL pthread_create\n");
		return 1;
	}
	printf("ready sigrtmin=%d\n", SIGRTMIN);
	for (unsigned long tick = 0;; tick++) {
		if (drain) {
			drain = 0;
			struct timespec zero = {0, 0};
			siginfo_t si;
			while (sigtimedwait(&held, &si, &zero) > 0)
				printf("took sig=%d code=%d pid=%d value=%d\n", si.si_signo, si.si_code, (int)si.si_pid,
				       si.si_value.sival_int);
			printf("took done\n");
		}
		sigset_t pend;
		sigpending(&pend);
		uint64_t mask = 0;
		for (int s = 1; s <= 64; s++)
			if (sigismember(&pend, s) == 1)
				mask |= 1ull << (s - 1);
		struct timespec m;
		clock_gettime(CLOCK_MONOTONIC, &m);
		printf("tick %lu mono_ns=%lld pid=%d pending=%#llx ok\n", tick, m.tv_sec * 1000000000LL + m.tv_nsec,
		       getpid(), (unsigned long long)mask);
		struct timespec d = {0, PERIOD_MS * 1000000L};
		while (nanosleep(&d, &d) != 0 && errno == EINTR)
			;
	}
}
