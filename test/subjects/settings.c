// settings: a checkpoint/restore subject that changes the per-process and
// per-thread settings a program may change about itself, away from what
// a new process inherits, then ticks:
//   tick N pid=P ok
// A restore must give every setting back; the state oracle compares them
// in /proc. With the argument "slack" its second thread also sets its
// timer slack, which no image can hold; with "deadline" it runs under
// SCHED_DEADLINE, whose parameters no image can hold either.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_MS 20

static void fail(const char *what) {
	printf("FAIL %s: %s\n", what, strerror(errno));
	fflush(stdout);
	_exit(1);
}

// sched_attr is struct sched_attr of include/uapi/linux/sched/types.h.
struct sched_attr {
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime, deadline, period;
};

static void *worker(void *arg) {
	const char *mode = arg;
	// A thread's own name and nice value.
	if (prctl(PR_SET_NAME, "settings-worker") != 0)
		fail("PR_SET_NAME");
	if (mode && strcmp(mode, "slack") == 0 && prctl(PR_SET_TIMERSLACK, 2000000) != 0)
		fail("PR_SET_TIMERSLACK");
	if (setpriority(PRIO_PROCESS, 0, 3) != 0)
		fail("setpriority");
	if (mode && strcmp(mode, "deadline") == 0) {
		struct sched_attr a = {.size = sizeof(a), .policy = 6 /* SCHED_DEADLINE */,
				       .runtime = 1000000, .deadline = 10000000, .period = 10000000};
		if (syscall(SYS_sched_setattr, 0, &a, 0) != 0)
			fail("sched_setattr SCHED_DEADLINE");
	}
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct sched_param sp = {0};
	if (sched_setscheduler(0, SCHED_BATCH, &sp) != 0)
		fail("sched_setscheduler");
	if (prctl(PR_SET_SPECULATION_CTRL, PR_SPEC_STORE_BYPASS, PR_SPEC_DISABLE, 0, 0) != 0 && errno != ENXIO && errno != EINVAL)
		fail("PR_SET_SPECULATION_CTRL");
	pthread_t t;
	if (pthread_create(&t, NULL, worker, argc > 1 ? argv[1] : NULL) != 0)
		fail("pthread_create");
	for (unsigned long tick = 0;; tick++) {
		printf("tick %lu pid=%d ok\n", tick, getpid());
		struct timespec d = {0, PERIOD_MS * 1000000L};
		while (nanosleep(&d, &d) != 0 && errno == EINTR)
			;
	}
}
