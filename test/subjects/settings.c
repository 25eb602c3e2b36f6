// settings: a checkpoint/restore subject that changes the per-process and
// per-thread settings a program may change about itself, away from what
// a new process inherits, then ticks:
//   tick N pid=P ok
// A restore must give every setting back; the state oracle compares them
// in /proc. With the argument "slack" its second thread also sets its
// timer slack, which no image can hold; with "deadline" it runs under
// SCHED_DEADLINE, whose parameters no image can hold either. Its main
// thread interleaves its memory over node 0 (set_mempolicy), and checks
// every tick that it still does; the process sets its audit login UID
// (as a login would, which needs CAP_AUDIT_CONTROL) where the kernel has
// one, and checks it every tick too.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_MS 20
#define LOGINUID "4242"

static void fail(const char *what) {
	printf("FAIL %s: %s\n", what, strerror(errno));
	fflush(stdout);
	_exit(1);
}

// From include/uapi/linux/mempolicy.h, which glibc does not ship.
#define MPOL_INTERLEAVE_ 3
#define MPOL_F_STATIC_NODES_ (1 << 15)

// sched_attr is struct sched_attr of include/uapi/linux/sched/types.h.
struct sched_attr {
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime, deadline, period;
};

static int worker_ready[2];

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
	// Set up: the main thread ticks from now on.
	if (write(worker_ready[1], "", 1) != 1)
		fail("tell the worker is set up");
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
	char c;
	if (pipe(worker_ready) != 0)
		fail("pipe");
	if (pthread_create(&t, NULL, worker, argc > 1 ? argv[1] : NULL) != 0)
		fail("pthread_create");
	// The worker sets itself up (name, slack, SCHED_DEADLINE) before the
	// first tick: a dump after it sees all of it.
	if (read(worker_ready[0], &c, 1) != 1)
		fail("wait for the worker");
	close(worker_ready[0]);
	close(worker_ready[1]);
	// The main thread's memory policy (not the worker's, born before):
	// interleaving over node 0, as numactl --interleave=0 would set it,
	// with MPOL_F_STATIC_NODES; none without NUMA.
	unsigned long node0 = 1;
	int numa = syscall(SYS_set_mempolicy, MPOL_INTERLEAVE_ | MPOL_F_STATIC_NODES_, &node0, 64 + 1) == 0;
	if (!numa && errno != ENOSYS)
		fail("set_mempolicy");
	int audit = 1;
	int lfd = open("/proc/self/loginuid", O_WRONLY);
	if (lfd < 0 && errno == ENOENT)
		audit = 0;
	else if (lfd < 0 || write(lfd, LOGINUID, strlen(LOGINUID)) != (ssize_t)strlen(LOGINUID) || close(lfd) != 0)
		fail("set loginuid");
	for (unsigned long tick = 0;; tick++) {
		int mode = -1;
		unsigned long nodes[16] = {0};
		if (numa && (syscall(SYS_get_mempolicy, &mode, nodes, 1024, 0, 0) != 0 ||
			     mode != (MPOL_INTERLEAVE_ | MPOL_F_STATIC_NODES_) || nodes[0] != 1)) {
			printf("FAIL memory policy %#x nodes %#lx\n", mode, nodes[0]);
			exit(1);
		}
		char uid[16] = {0};
		int rfd = audit ? open("/proc/self/loginuid", O_RDONLY) : -1;
		if (audit && (rfd < 0 || read(rfd, uid, sizeof(uid) - 1) < 0 || close(rfd) != 0 || strcmp(uid, LOGINUID) != 0)) {
			printf("FAIL loginuid %s\n", uid);
			exit(1);
		}
		printf("tick %lu pid=%d ok\n", tick, getpid());
		struct timespec d = {0, PERIOD_MS * 1000000L};
		while (nanosleep(&d, &d) != 0 && errno == EINTR)
			;
	}
}
