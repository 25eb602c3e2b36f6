// vdsospin: a checkpoint/restore subject that spends nearly all its time
// inside the vDSO, calling clock_gettime through the pointer it resolved
// there, so that a dump finds it inside and steps it out, while signals
// arrive.
//
// It takes SIGRTMIN with a handler that prints, as the signal came:
//   took sig=S code=C pid=P value=V
// Every PERIOD_MS of CLOCK_MONOTONIC it prints
//   tick N pid=P ok
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vdsosym.h"

#define PERIOD_MS 20

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static void on_signal(int sig, siginfo_t *si, void *uc) {
	(void)uc;
	char line[128];
	int n = snprintf(line, sizeof line, "took sig=%d code=%d pid=%d value=%d\n", sig, si->si_code, (int)si->si_pid,
			 si->si_value.sival_int);
	// One write, safe in a handler: the line comes whole.
	if (write(1, line, n) != n)
		_exit(2);
}

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	clock_gettime_fn vdso_clock_gettime = vdso_sym("__vdso_clock_gettime");
	if (!vdso_clock_gettime) {
		printf("FAIL resolve __vdso_clock_gettime\n");
		return 1;
	}
	struct sigaction sa = {.sa_sigaction = on_signal, .sa_flags = SA_SIGINFO | SA_RESTART};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGRTMIN, &sa, NULL) != 0) {
		printf("FAIL sigaction: %s\n", strerror(errno));
		return 1;
	}
	printf("ready sigrtmin=%d\n", SIGRTMIN);
	struct timespec now;
	long long next = 0;
	for (unsigned long tick = 0;;) {
		if (vdso_clock_gettime(CLOCK_MONOTONIC, &now) != 0) {
			printf("FAIL clock_gettime\n");
			return 1;
		}
		if (ns(now) >= next) {
			printf("tick %lu pid=%d ok\n", tick++, getpid());
			next = ns(now) + PERIOD_MS * 1000000LL;
		}
	}
}
