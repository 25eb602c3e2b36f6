// procfd: a checkpoint/restore subject holding files of its own /proc
// open: its namespaces (/proc/self/ns/NAME) and its status file, read
// part way; and the stat file of a child of its (/proc/CHILD/stat), which
// sleeps. Every PERIOD_MS it checks that each namespace descriptor is
// the namespace it runs in, that the status file is its own, at the
// position it left it, and the stat file its child's, and prints
//   tick N pid=P ok
// or "FAIL ..." and exits 1.
//
// Usage: procfd [foreign|gonecwd]
//   foreign  then make a new network namespace and come back: the net
//            descriptor is of that one, another namespace than the
//            process's (needs root)
//   gonecwd  then work in /proc/PID of a child that has exited and been
//            reaped since (which a dump refuses)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20
#define STATUS_POS 5 // after "Name:"

static const char *names[] = {"net", "uts", "ipc", "pid", "user", "mnt", "cgroup", "time"};
#define N (sizeof names / sizeof names[0])

static void link_of(const char *path, char *buf, size_t len) {
	ssize_t n = readlink(path, buf, len - 1);
	if (n < 0)
		fail("readlink %s: %s", path, strerror(errno));
	buf[n] = 0;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	int fds[N];
	char path[64];
	for (size_t i = 0; i < N; i++) {
		snprintf(path, sizeof path, "/proc/self/ns/%s", names[i]);
		if ((fds[i] = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			fail("open %s: %s", path, strerror(errno));
	}
	int status = open("/proc/self/status", O_RDONLY);
	char buf[4096];
	if (status < 0 || read(status, buf, STATUS_POS) != STATUS_POS)
		fail("read /proc/self/status: %s", strerror(errno));
	int foreign = argc > 1 && !strcmp(argv[1], "foreign");
	if (foreign) {
		if (unshare(CLONE_NEWNET) != 0)
			fail("unshare CLONE_NEWNET: %s", strerror(errno));
		int other = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		if (other < 0 || setns(fds[0], CLONE_NEWNET) != 0 || dup3(other, fds[0], O_CLOEXEC) < 0)
			fail("come back from a new network namespace: %s", strerror(errno));
		close(other);
	}
	pid_t child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	snprintf(path, sizeof path, "/proc/%d/stat", child);
	int cstat = open(path, O_RDONLY);
	if (cstat < 0)
		fail("open %s: %s", path, strerror(errno));
	if (argc > 1 && !strcmp(argv[1], "gonecwd")) {
		pid_t gone = fork();
		if (gone == 0)
			_exit(0);
		snprintf(path, sizeof path, "/proc/%d", gone);
		if (gone < 0 || chdir(path) != 0 || waitpid(gone, NULL, 0) != gone)
			fail("work in %s: %s", path, strerror(errno));
	}
	printf("ready net=%d time=%d status=%d child=%d cstat=%d\n", fds[0], fds[N - 1], status, child, cstat);
	for (long tick = 0;; tick++) {
		for (size_t i = foreign; i < N; i++) { // net is names[0]
			char want[64], got[64];
			snprintf(path, sizeof path, "/proc/self/ns/%s", names[i]);
			link_of(path, want, sizeof want);
			snprintf(path, sizeof path, "/proc/self/fd/%d", fds[i]);
			link_of(path, got, sizeof got);
			if (strcmp(want, got))
				fail("fd %d is %s, but the process's %s namespace is %s", fds[i], got, names[i], want);
		}
		if (lseek(status, 0, SEEK_CUR) != STATUS_POS)
			fail("status fd %d at %ld, want %d", status, (long)lseek(status, 0, SEEK_CUR), STATUS_POS);
		ssize_t n = pread(status, buf, sizeof buf - 1, 0);
		if (n <= 0)
			fail("read status fd %d: %s", status, strerror(errno));
		buf[n] = 0;
		char want[64];
		snprintf(want, sizeof want, "\nPid:\t%d\n", getpid());
		if (!strstr(buf, want))
			fail("status fd %d is not this process's: %.80s", status, buf);
		n = pread(cstat, buf, sizeof buf - 1, 0);
		if (n <= 0)
			fail("read the child's stat fd %d: %s", cstat, strerror(errno));
		buf[n] = 0;
		snprintf(want, sizeof want, "%d (", child);
		if (strncmp(buf, want, strlen(want)))
			fail("stat fd %d is not the child's: %.80s", cstat, buf);
		printf("tick %ld pid=%d ok\n", tick, getpid());
		struct timespec ts = {0, PERIOD_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
}
