// tree: a checkpoint/restore subject made of several processes, whose
// links, groups, shared descriptors and zombies a restore must keep.
//
// Usage: tree [DIR [uts|siblings]]. Started as a session leader, it makes:
//   writer   a child that writes 1, 2, 3... into a pipe every PERIOD_MS,
//            and each number first into a MAP_SHARED anonymous page that
//            every process maps and into a memfd every process holds
//            (both made before the forks)
//   reader   a child that reads them from the pipe, checks that none is
//            skipped or repeated, and passes each on through a second
//            pipe to the root, which checks them again
//   group    a child leading a process group of its own, with a child of
//            its own, grandchild, in that group; both check their parent,
//            and grandchild has a parent-death signal (SIGTERM, caught)
//   exited   a child that exited with EXIT_CODE, not waited for
//   killed   a child killed by SIGTERM, not waited for
//   orphan   a child left alone in a process group whose leader, another
//            child that made it (CLONE_PARENT), has exited and been
//            waited for
//   twin     a child sharing the root's descriptor table and filesystem
//            context (CLONE_FILES | CLONE_FS)
// and it shares with them a file opened before the forks (one open file
// description: one offset), DIR/shared, which the writer appends a line
// to at each number; without DIR it is made in the working directory and
// unlinked at once, to travel with the images to another machine. Every process checks at each tick that its parent and groups
// are as they were; the root checks the zombies without reaping them
// (waitid WNOWAIT), that the numbers keep coming (none for STALL_TICKS
// ticks fails) and that the shared page and the memfd hold at least the
// last number passed on, and prints
//   tick N mono_ns=T pid=P ok
// with T its CLOCK_MONOTONIC, or "FAIL ..." (from any process) and exits
// 1. With DIR it first prints "ready writer=PID reader=PID group=PID
// grandchild=PID exited=PID killed=PID orphan=PID leader=PID twin=PID
// file=FD moved=PID" (moved 0 but with session).
//
// What a dump must refuse, with an argument: uts, the reader in a UTS
// namespace of its own; siblings, two more children, one made by the
// other with CLONE_PARENT, sharing a descriptor table of their own
// (CLONE_FILES): not their parent's; session, one more child, moved, that
// made a child of its own and then a session: its child is left in the
// root's session, whose leader is outside a dump of moved and in a dump
// of the root, not its parent.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20
#define EXIT_CODE 7
// STALL_TICKS is how long the numbers may stop coming: a restore under
// emulation is slow, but never 20 s.
#define STALL_TICKS 1000

// watch checks, for a child, that its parent and its group are still the
// ones it was born with.
static void watch(pid_t parent, pid_t pgid, const char *who) {
	if (getppid() != parent)
		fail("%s %d: parent %d, want %d", who, getpid(), getppid(), parent);
	if (getpgrp() != pgid)
		fail("%s %d: process group %d, want %d", who, getpid(), getpgrp(), pgid);
}

static volatile uint32_t *shared;
static int memfd;

static void writer(int out, int file, pid_t parent) {
	for (uint32_t n = 1;; n++) {
		*shared = n;
		if (pwrite(memfd, &n, sizeof n, 0) != sizeof n)
			fail("writer: write the memfd: %s", strerror(errno));
		if (write(out, &n, sizeof n) != sizeof n)
			fail("writer: write %u: %s", n, strerror(errno));
		char line[32];
		int len = snprintf(line, sizeof line, "%u\n", n);
		if (write(file, line, len) != len)
			fail("writer: append to the shared file: %s", strerror(errno));
		watch(parent, parent, "writer");
		nap_ms(PERIOD_MS);
	}
}

static void reader(int in, int out, pid_t parent) {
	for (uint32_t want = 1;; want++) {
		uint32_t n;
		ssize_t got = read(in, &n, sizeof n);
		if (got != sizeof n)
			fail("reader: read %zd: %s", got, strerror(errno));
		if (n != want)
			fail("reader: got %u, want %u", n, want);
		if (write(out, &n, sizeof n) != sizeof n)
			fail("reader: pass %u on: %s", n, strerror(errno));
		watch(parent, parent, "reader");
	}
}

static volatile sig_atomic_t orphaned;
static void on_term(int sig) { (void)sig, orphaned = 1; }

static void grandchild(pid_t parent) {
	struct sigaction sa = {.sa_handler = on_term};
	if (sigaction(SIGTERM, &sa, NULL) != 0 || prctl(PR_SET_PDEATHSIG, SIGTERM) != 0)
		fail("grandchild: parent-death signal: %s", strerror(errno));
	for (;;) {
		if (orphaned)
			_exit(0); // its parent died: nothing is left to check
		watch(parent, parent, "grandchild");
		nap_ms(PERIOD_MS);
	}
}

static int sleep_forever(void *arg) {
	(void)arg;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (;;)
		pause();
	return 0;
}

int main(int argc, char **argv) {
	if (argc > 3)
		fail("usage: tree [DIR [uts|siblings]]");
	const char *dir = argc > 1 ? argv[1] : ".";
	const char *refused = argc == 3 ? argv[2] : "";
	shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	memfd = memfd_create("tree", MFD_CLOEXEC);
	if (shared == MAP_FAILED || memfd < 0 || ftruncate(memfd, sizeof(uint32_t)) != 0)
		fail("mmap, memfd_create: %s", strerror(errno));
	pid_t root = getpid();
	if (getsid(0) != root)
		fail("not a session leader");
	char path[4096];
	snprintf(path, sizeof path, "%s/shared", dir);
	int file = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (argc == 1)
		unlink(path);
	int numbers[2], passed[2], ready[2];
	if (file < 0 || pipe(numbers) != 0 || pipe(passed) != 0 || pipe(ready) != 0)
		fail("setup: %s", strerror(errno));

	pid_t w = fork();
	if (w == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		writer(numbers[1], file, root);
	}
	pid_t r = fork();
	if (r == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (strcmp(refused, "uts") == 0 && unshare(CLONE_NEWUTS) != 0)
			fail("unshare: %s", strerror(errno));
		reader(numbers[0], passed[1], root);
	}
	pid_t g = fork();
	if (g == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (setpgid(0, 0) != 0)
			fail("group: setpgid: %s", strerror(errno));
		pid_t me = getpid();
		pid_t gc = fork();
		if (gc == 0)
			grandchild(me);
		if (write(ready[1], &gc, sizeof gc) != sizeof gc)
			fail("group: %s", strerror(errno));
		for (;;) {
			watch(root, me, "group");
			if (getpgid(gc) != me)
				fail("group: grandchild %d in group %d, want %d", gc, getpgid(gc), me);
			nap_ms(PERIOD_MS);
		}
	}
	static char stack[64 << 10];
	pid_t twin = clone(sleep_forever, stack + sizeof stack, CLONE_FILES | CLONE_FS | SIGCHLD, NULL);
	if (twin < 0)
		fail("clone: %s", strerror(errno));
	if (strcmp(refused, "siblings") == 0 && fork() == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (clone(sleep_forever, stack + sizeof stack, CLONE_FILES | CLONE_PARENT | SIGCHLD, NULL) < 0)
			fail("clone: %s", strerror(errno));
		sleep_forever(NULL);
	}
	pid_t gc;
	if (read(ready[0], &gc, sizeof gc) != sizeof gc)
		fail("read the grandchild's pid: %s", strerror(errno));
	pid_t leader = fork();
	if (leader == 0) {
		if (setpgid(0, 0) != 0)
			fail("leader: setpgid: %s", strerror(errno));
		pid_t o = clone(sleep_forever, stack + sizeof stack, CLONE_PARENT | SIGCHLD, NULL);
		if (o < 0 || write(ready[1], &o, sizeof o) != sizeof o)
			fail("leader: clone: %s", strerror(errno));
		_exit(0);
	}
	pid_t orphan;
	if (read(ready[0], &orphan, sizeof orphan) != sizeof orphan || waitpid(leader, NULL, 0) != leader)
		fail("make the orphan: %s", strerror(errno));
	pid_t moved = 0;
	if (strcmp(refused, "session") == 0) {
		moved = fork();
		if (moved == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (fork() == 0) {
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				sleep_forever(NULL);
			}
			pid_t me = setsid();
			if (me < 0 || write(ready[1], &me, sizeof me) != sizeof me)
				fail("moved: setsid: %s", strerror(errno));
			sleep_forever(NULL);
		}
		if (read(ready[0], &moved, sizeof moved) != sizeof moved)
			fail("read the moved child's pid: %s", strerror(errno));
	}
	pid_t ex = fork();
	if (ex == 0)
		_exit(EXIT_CODE);
	pid_t k = fork();
	if (k == 0)
		for (;;)
			pause();
	kill(k, SIGTERM);
	// Both are zombies once waitid WNOWAIT sees them.
	siginfo_t si;
	pid_t zombies[] = {ex, k};
	for (int i = 0; i < 2; i++) {
		memset(&si, 0, sizeof si);
		if (waitid(P_PID, zombies[i], &si, WEXITED | WNOWAIT) != 0)
			fail("waitid %d: %s", zombies[i], strerror(errno));
	}
	fcntl(passed[0], F_SETFL, O_NONBLOCK);
	// Without DIR, its output is ticks alone (the cross-kernel tests').
	if (argc > 1)
		printf("ready writer=%d reader=%d group=%d grandchild=%d exited=%d killed=%d orphan=%d leader=%d twin=%d file=%d moved=%d\n",
		       w, r, g, gc, ex, k, orphan, leader, twin, file, moved);
	fflush(stdout);

	uint32_t seq = 0;
	int stalled = 0;
	for (int tick = 0;; tick++) {
		uint32_t n;
		stalled++;
		while (read(passed[0], &n, sizeof n) == sizeof n) {
			if (n != seq + 1)
				fail("root: got %u after %u", n, seq);
			seq = n;
			stalled = 0;
		}
		if (stalled > STALL_TICKS)
			fail("root: no number passed on for %d ticks, after %u", stalled, seq);
		if (*shared < seq)
			fail("root: the shared page holds %u, below %u", *shared, seq);
		uint32_t held = 0;
		if (pread(memfd, &held, sizeof held, 0) != sizeof held || held < seq)
			fail("root: the memfd holds %u, below %u: %s", held, seq, strerror(errno));
		if (getsid(0) != root || getpgrp() != root)
			fail("root: session %d, group %d, want %d", getsid(0), getpgrp(), root);
		if (getpgid(g) != g || getpgid(gc) != g || getsid(g) != root)
			fail("root: group child %d in group %d (grandchild %d), session %d", g, getpgid(g), getpgid(gc), getsid(g));
		if (getpgid(w) != root || getpgid(r) != root)
			fail("root: writer or reader left the root's group");
		if (getpgid(orphan) != leader)
			fail("root: orphan %d in group %d, want %d", orphan, getpgid(orphan), leader);
		struct {
			pid_t pid;
			int code, status;
		} zs[] = {{ex, CLD_EXITED, EXIT_CODE}, {k, CLD_KILLED, SIGTERM}};
		for (int i = 0; i < 2; i++) {
			memset(&si, 0, sizeof si);
			if (waitid(P_PID, zs[i].pid, &si, WEXITED | WNOWAIT | WNOHANG) != 0)
				fail("root: waitid %d: %s", zs[i].pid, strerror(errno));
			if (si.si_pid != zs[i].pid || si.si_code != zs[i].code || si.si_status != zs[i].status)
				fail("root: zombie %d: pid %d code %d status %d, want code %d status %d", zs[i].pid, si.si_pid,
				     si.si_code, si.si_status, zs[i].code, zs[i].status);
		}
		// The other children must not have ended.
		pid_t live[] = {w, r, g, orphan, twin};
		for (int i = 0; i < 5; i++) {
			memset(&si, 0, sizeof si);
			if (waitid(P_PID, live[i], &si, WEXITED | WNOWAIT | WNOHANG) != 0)
				fail("root: waitid %d: %s", live[i], strerror(errno));
			if (si.si_pid != 0)
				fail("root: child %d ended (code %d, status %d)", live[i], si.si_code, si.si_status);
		}
		struct timespec m;
		clock_gettime(CLOCK_MONOTONIC, &m);
		printf("tick %d mono_ns=%lld pid=%d ok\n", tick, m.tv_sec * 1000000000LL + m.tv_nsec, root);
		fflush(stdout);
		nap_ms(PERIOD_MS);
	}
}
