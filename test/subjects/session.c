// session: a checkpoint/restore subject in sessions and a process group
// whose leaders have exited, as a daemon that forked twice is.
//
// Usage: session. Started as a session leader (the starter), it makes
//   root        in a session whose leader has exited: a helper child
//               called setsid, made the root with CLONE_PARENT (so the
//               root is the starter's child) and exited
//   member      the root's child, made the same way in a session of its
//               own whose leader has exited
//   grandchild  the member's child, made the same way in a process group
//               of the member's session whose leader (setpgid) has exited
// The starter reaps its children (the helper, then the root once a dump
// kills it) and waits. Every PERIOD_MS each process checks that its
// session and group, and but for the root (whose parent a restore is)
// its parent, are as they were; the root prints
//   ready root=PID member=PID grandchild=PID
// once, then
//   tick N pid=P ok
// or "FAIL ..." (from any of them) and exits 1.
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20

// behind makes a child of the caller through a helper that leads a new
// session (or only a process group) and makes the child with
// CLONE_PARENT, then exits and is reaped: the child is left in a session
// or group whose leader has exited. It returns the child's pid in the
// caller, 0 in the child.
static pid_t behind(int session) {
	int p[2];
	if (pipe(p) != 0)
		fail("pipe: %s", strerror(errno));
	pid_t helper = fork();
	if (helper < 0)
		fail("fork: %s", strerror(errno));
	if (helper == 0) {
		if ((session ? setsid() : setpgid(0, 0)) < 0)
			fail("helper: lead: %s", strerror(errno));
		pid_t c = syscall(SYS_clone, CLONE_PARENT, 0, 0, 0, 0);
		if (c < 0)
			fail("helper: clone: %s", strerror(errno));
		if (c == 0) {
			close(p[0]);
			close(p[1]);
			return 0;
		}
		if (write(p[1], &c, sizeof c) != sizeof c)
			fail("helper: write: %s", strerror(errno));
		_exit(0);
	}
	pid_t c;
	if (read(p[0], &c, sizeof c) != sizeof c || waitpid(helper, NULL, 0) != helper)
		fail("make a child behind helper %d: %s", helper, strerror(errno));
	close(p[0]);
	close(p[1]);
	return c;
}

// watch checks, every PERIOD_MS, that the process is where it was born;
// the root also ticks.
static void watch(int root) {
	pid_t parent = getppid(), pgid = getpgrp(), sid = getsid(0);
	if (pgid == getpid() || sid == getpid())
		fail("%d leads its group %d or session %d", getpid(), pgid, sid);
	for (long tick = 0;; tick++) {
		if (!root && getppid() != parent)
			fail("%d: parent %d, want %d", getpid(), getppid(), parent);
		if (getpgrp() != pgid || getsid(0) != sid)
			fail("%d: group %d and session %d, want %d and %d", getpid(), getpgrp(), getsid(0), pgid, sid);
		if (root)
			printf("tick %ld pid=%d ok\n", tick, getpid());
		nap_ms(PERIOD_MS);
	}
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (behind(1) != 0) {
		// The starter.
		for (;;)
			if (wait(NULL) < 0)
				pause();
	}
	int p[2];
	if (pipe(p) != 0)
		fail("pipe: %s", strerror(errno));
	pid_t member = behind(1);
	if (member == 0) {
		pid_t gc = behind(0);
		if (gc == 0)
			watch(0);
		if (write(p[1], &gc, sizeof gc) != sizeof gc)
			fail("member: write: %s", strerror(errno));
		watch(0);
	}
	pid_t gc;
	if (read(p[0], &gc, sizeof gc) != sizeof gc)
		fail("read the grandchild's pid: %s", strerror(errno));
	close(p[0]);
	close(p[1]);
	printf("ready root=%d member=%d grandchild=%d\n", getpid(), member, gc);
	watch(1);
}
