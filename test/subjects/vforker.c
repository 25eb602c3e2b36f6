// vforker: a checkpoint/restore subject whose child waits in vfork: the
// child vforks a grandchild that sleeps without exec or exit, sharing its
// memory, so the child stays in the kernel, where nothing stops it. The
// root prints "ready child=PID" then "tick N ok" every PERIOD_MS, and
// checks that the child is still there.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20

int main(void) {
	pid_t child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (vfork() == 0) {
			// The vfork child may only make system calls; it sleeps
			// until its grandparent goes.
			syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL);
			for (;;)
				syscall(SYS_pause);
		}
		_exit(0);
	}
	printf("ready child=%d\n", child);
	fflush(stdout);
	for (unsigned long n = 0;; n++) {
		if (kill(child, 0) != 0)
			fail("child %d is gone: %s", child, strerror(errno));
		printf("tick %lu ok\n", n);
		fflush(stdout);
		struct timespec ts = {0, PERIOD_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
}
