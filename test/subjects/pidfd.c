// pidfd: a checkpoint/restore subject holding pidfds of its children,
// which checks every tick that each still refers to its child.
//
// It forks
//   child   a child that sleeps, killed when its parent dies
//           (PR_SET_PDEATHSIG SIGKILL)
//   zombie  a child that exits with EXIT_CODE, never waited for
// and holds
//   pidfd   pidfd_open(child, 0)
//   nbfd    pidfd_open(child, PIDFD_NONBLOCK)
//   tfd     pidfd_open(child, PIDFD_THREAD), of its only thread
//   zfd     pidfd_open(zombie, 0), opened before it exits
//   reapedfd pidfd_open(PIDFD_NONBLOCK) of a third child, which has
//           exited and been waited for since
//   samefd  pidfd_open(0) of that third child too, opened apart
//   otherfd pidfd_open(0) of a fourth child, reaped too
// Every tick it checks that each pidfd's fdinfo says its child's pid (-1
// for reapedfd), that child can be signalled through pidfd and has not
// exited (pidfd not readable), that a wait through nbfd does not block
// (EAGAIN), that a wait through zfd, which leaves the zombie, reports
// EXIT_CODE, and that reapedfd is readable and cannot be signalled
// through (ESRCH) nor waited for (ECHILD), that samefd is of the same
// process as reapedfd (the same pidfs inode) and otherfd of another.
//
// Usage: pidfd [parent]. What a dump must refuse, with the argument
// parent: a pidfd of a process outside its tree,
//   parentfd pidfd_open(getppid(), 0)
//
// Once set up it prints
//   ready child=PID pidfd=FD nbfd=FD tfd=FD zombie=PID zfd=FD reapedfd=FD samefd=FD otherfd=FD [parentfd=FD]
// then every tick
//   tick N pid=P ok
// or "FAIL ..." and exits 1 when a check fails.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20
#define EXIT_CODE 7

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int pidfd_open(pid_t pid, unsigned flags) {
	return syscall(SYS_pidfd_open, pid, flags);
}

// fdinfo_pid returns the pid the fdinfo of descriptor fd names.
static long fdinfo_pid(int fd) {
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "r");
	if (!f)
		fail("open %s: %s", path, strerror(errno));
	long pid = 0;
	int found = 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "Pid: %ld", &pid) == 1) {
			found = 1;
			break;
		}
	fclose(f);
	if (!found)
		fail("%s: no Pid line", path);
	return pid;
}

static void check(int fd, const char *name, pid_t want) {
	long got = fdinfo_pid(fd);
	if (got != want)
		fail("%s %d: fdinfo says pid %ld, want %d", name, fd, got, want);
}

int main(int argc, char **argv) {
	const char *arg = argc > 1 ? argv[1] : "";
	pid_t self = getpid();
	pid_t child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
			fail("PR_SET_PDEATHSIG: %s", strerror(errno));
		if (getppid() != self)
			_exit(1);
		for (;;)
			pause();
	}
	int pidfd = pidfd_open(child, 0);
	int nbfd = pidfd_open(child, PIDFD_NONBLOCK);
	int tfd = pidfd_open(child, PIDFD_THREAD);
	if (pidfd < 0 || nbfd < 0 || tfd < 0)
		fail("pidfd_open %d: %s", child, strerror(errno));
	int pipefd[2];
	if (pipe(pipefd) != 0)
		fail("pipe: %s", strerror(errno));
	pid_t zombie = fork();
	if (zombie < 0)
		fail("fork: %s", strerror(errno));
	if (zombie == 0) {
		char c;
		close(pipefd[1]);
		// Exits once its parent holds its pidfd.
		while (read(pipefd[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(EXIT_CODE);
	}
	int zfd = pidfd_open(zombie, 0);
	if (zfd < 0)
		fail("pidfd_open %d: %s", zombie, strerror(errno));
	close(pipefd[0]);
	close(pipefd[1]);
	siginfo_t si;
	memset(&si, 0, sizeof si);
	if (waitid(P_PIDFD, zfd, &si, WEXITED | WNOWAIT) != 0)
		fail("waitid zombie: %s", strerror(errno));
	pid_t gone = fork();
	if (gone < 0)
		fail("fork: %s", strerror(errno));
	if (gone == 0)
		_exit(0);
	int reapedfd = pidfd_open(gone, PIDFD_NONBLOCK), samefd = pidfd_open(gone, 0);
	if (reapedfd < 0 || samefd < 0)
		fail("pidfd_open %d: %s", gone, strerror(errno));
	if (waitpid(gone, NULL, 0) != gone)
		fail("waitpid %d: %s", gone, strerror(errno));
	pid_t other = fork();
	if (other < 0)
		fail("fork: %s", strerror(errno));
	if (other == 0)
		_exit(0);
	int otherfd = pidfd_open(other, 0);
	if (otherfd < 0)
		fail("pidfd_open %d: %s", other, strerror(errno));
	if (waitpid(other, NULL, 0) != other)
		fail("waitpid %d: %s", other, strerror(errno));
	int parentfd = -1;
	char extra[32] = "";
	if (strcmp(arg, "parent") == 0) {
		parentfd = pidfd_open(getppid(), 0);
		if (parentfd < 0)
			fail("pidfd_open parent %d: %s", getppid(), strerror(errno));
		snprintf(extra, sizeof extra, " parentfd=%d", parentfd);
	}
	printf("ready child=%d pidfd=%d nbfd=%d tfd=%d zombie=%d zfd=%d reapedfd=%d samefd=%d otherfd=%d%s\n", child, pidfd, nbfd, tfd, zombie, zfd, reapedfd,
	       samefd, otherfd, extra);
	fflush(stdout);
	for (long n = 1;; n++) {
		nap_ms(PERIOD_MS);
		check(pidfd, "pidfd", child);
		check(nbfd, "nbfd", child);
		check(tfd, "tfd", child);
		check(zfd, "zfd", zombie);
		if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) != 0)
			fail("pidfd_send_signal to %d: %s", child, strerror(errno));
		struct pollfd p = {.fd = pidfd, .events = POLLIN};
		if (poll(&p, 1, 0) != 0)
			fail("pidfd of %d readable (poll %#x): the child has exited", child, p.revents);
		if ((fcntl(nbfd, F_GETFL) & O_NONBLOCK) == 0)
			fail("nbfd %d lost O_NONBLOCK", nbfd);
		if ((fcntl(tfd, F_GETFL) & PIDFD_THREAD) == 0)
			fail("tfd %d lost PIDFD_THREAD", tfd);
		memset(&si, 0, sizeof si);
		if (waitid(P_PIDFD, nbfd, &si, WEXITED) == 0 || errno != EAGAIN)
			fail("waitid through nbfd: %s, want EAGAIN", strerror(errno));
		memset(&si, 0, sizeof si);
		if (waitid(P_PIDFD, zfd, &si, WEXITED | WNOWAIT | WNOHANG) != 0)
			fail("waitid through zfd: %s", strerror(errno));
		if (si.si_pid != zombie || si.si_code != CLD_EXITED || si.si_status != EXIT_CODE)
			fail("zombie %d: waitid says pid %d code %d status %d", zombie, si.si_pid, si.si_code, si.si_status);
		check(reapedfd, "reapedfd", -1);
		p = (struct pollfd){.fd = reapedfd, .events = POLLIN};
		if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
			fail("reapedfd not readable (poll %#x)", p.revents);
		if (syscall(SYS_pidfd_send_signal, reapedfd, 0, NULL, 0) == 0 || errno != ESRCH)
			fail("pidfd_send_signal through reapedfd: %s, want ESRCH", strerror(errno));
		if (waitid(P_PIDFD, reapedfd, &si, WEXITED | WNOHANG) == 0 || errno != ECHILD)
			fail("waitid through reapedfd: %s, want ECHILD", strerror(errno));
		if ((fcntl(reapedfd, F_GETFL) & O_NONBLOCK) == 0)
			fail("reapedfd %d lost PIDFD_NONBLOCK", reapedfd);
		struct stat a, b, o;
		if (fstat(reapedfd, &a) || fstat(samefd, &b) || fstat(otherfd, &o))
			fail("fstat reaped pidfds: %s", strerror(errno));
		if (a.st_ino != b.st_ino)
			fail("reapedfd and samefd are of different processes (inodes %lu, %lu)", (unsigned long)a.st_ino, (unsigned long)b.st_ino);
		if (a.st_ino == o.st_ino)
			fail("reapedfd and otherfd are of the same process (inode %lu)", (unsigned long)a.st_ino);
		if (parentfd >= 0 && fdinfo_pid(parentfd) <= 0)
			fail("parentfd: its process has exited");
		printf("tick %ld pid=%d ok\n", n, self);
		fflush(stdout);
	}
}
