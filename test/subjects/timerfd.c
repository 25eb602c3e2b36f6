// timerfd: a checkpoint/restore subject holding timerfds and signalfds,
// which checks every tick what it can of them without changing them.
//
// It holds:
//   clock  a periodic CLOCK_MONOTONIC timerfd (PERIOD_MS) whose read it
//          blocks in once per tick: a dump mostly finds it there
//   fast   a periodic CLOCK_MONOTONIC timerfd (FAST_MS, or FAST_NS
//          nanoseconds), O_NONBLOCK and close-on-exec, never read: its
//          expirations pile up
//   once   a one-shot CLOCK_BOOTTIME timerfd that expired before ready,
//          never read: it holds one expiration
//   off    a CLOCK_BOOTTIME timerfd never armed
//   parked a CLOCK_MONOTONIC timerfd disarmed with a period of PARKED_S
//   slow   a CLOCK_BOOTTIME timerfd armed for SLOW_S seconds, period
//          2*SLOW_S: every tick checks that the clock plus its time left
//          is still when it was armed for
//   abs    a CLOCK_MONOTONIC timerfd armed with TFD_TIMER_ABSTIME for
//          ABS_S seconds after the start: every tick checks that the
//          clock plus its time left is still that deadline
//   wall   a CLOCK_REALTIME timerfd armed with TFD_TIMER_ABSTIME and
//          TFD_TIMER_CANCEL_ON_SET for WALL_S seconds after the start
//   ep     an epoll watching fast, which every tick checks is readable
//   sfd    a signalfd of SIGUSR1, O_NONBLOCK, read every tick
//   sfd2   a signalfd of SIGUSR2 and signal 40, never read
// with SIGUSR1, SIGUSR2 and signal 40 blocked.
//
// Usage: timerfd [FAST_NS | child]. With child, a child process shares
// all of them: it blocks in reads of sfd2, and prints
//   child pid=P got=N
// for each SIGUSR2 sent to it, read from there.
//
// Once set up it prints
//   ready clock=FD fast=FD once=FD off=FD parked=FD slow=FD abs=FD wall=FD ep=FD sfd=FD sfd2=FD child=PID
// then every tick
//   tick N pid=P expired=E sigs=S ok
// where E is what the read of clock returned and S how many SIGUSR1 it
// read from sfd; or "FAIL ..." and exits 1 when a check fails.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20
#define FAST_MS 2
#define SLOW_S 3600
#define PARKED_S 60
#define ABS_S 7200
#define WALL_S 5400
#define SIG40 40
// How far off its deadline a timer may seem: how long the subject may be
// preempted between reading the timer and the clock, on a loaded machine.
#define DEADLINE_NS 100000000

static int make(int clock, int flags) {
	int fd = timerfd_create(clock, flags);
	if (fd < 0)
		fail("timerfd_create %d: %s", clock, strerror(errno));
	return fd;
}

static void arm(int fd, int flags, time_t vsec, long vnsec, time_t isec, long insec) {
	struct itimerspec its = {.it_value = {vsec, vnsec}, .it_interval = {isec, insec}};
	if (timerfd_settime(fd, flags, &its, NULL) != 0)
		fail("timerfd_settime fd %d: %s", fd, strerror(errno));
}

static int64_t ns(struct timespec ts) { return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec; }

// check_deadline fails unless timer fd, on clock, expires at deadline.
static void check_deadline(int fd, int clock, int64_t deadline, const char *what) {
	struct itimerspec its;
	struct timespec now;
	if (timerfd_gettime(fd, &its) != 0 || clock_gettime(clock, &now) != 0)
		fail("timerfd_gettime: %s", strerror(errno));
	int64_t off_by = ns(now) + ns(its.it_value) - deadline;
	if (off_by < -DEADLINE_NS || off_by > DEADLINE_NS)
		fail("%s timer off its deadline by %lld ns", what, (long long)off_by);
}

static int sigfd(int flags, int a, int b) {
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, a);
	if (b)
		sigaddset(&m, b);
	int fd = signalfd(-1, &m, flags);
	if (fd < 0)
		fail("signalfd: %s", strerror(errno));
	return fd;
}

// child reads its own SIGUSR2s from sfd2, which its parent made.
static void child(int sfd2) {
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
		fail("child: prctl: %s", strerror(errno));
	for (long got = 1;; got++) {
		struct signalfd_siginfo si;
		ssize_t n;
		while ((n = read(sfd2, &si, sizeof si)) < 0 && errno == EINTR)
			;
		if (n != sizeof si || si.ssi_signo != SIGUSR2)
			fail("child: read the signalfd: %zd, %s, signal %u", n, strerror(errno), si.ssi_signo);
		printf("child pid=%d got=%ld\n", getpid(), got);
	}
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	sigset_t blocked;
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGUSR1);
	sigaddset(&blocked, SIGUSR2);
	sigaddset(&blocked, SIG40);
	if (sigprocmask(SIG_BLOCK, &blocked, NULL) != 0)
		fail("sigprocmask: %s", strerror(errno));

	int clock = make(CLOCK_MONOTONIC, 0);
	arm(clock, 0, 0, PERIOD_MS * 1000000, 0, PERIOD_MS * 1000000);
	int fast = make(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	int with_child = argc > 1 && !strcmp(argv[1], "child");
	long fast_ns = argc > 1 && !with_child ? atol(argv[1]) : FAST_MS * 1000000;
	if (fast_ns <= 0 || fast_ns >= 1000000000)
		fail("usage: timerfd [FAST_NS | child], FAST_NS below a second");
	arm(fast, 0, 0, fast_ns, 0, fast_ns);
	int once = make(CLOCK_BOOTTIME, 0);
	arm(once, 0, 0, 1000000, 0, 0);
	struct pollfd p = {.fd = once, .events = POLLIN};
	if (poll(&p, 1, -1) != 1)
		fail("poll the one-shot timer: %s", strerror(errno));
	int off = make(CLOCK_BOOTTIME, 0);
	int parked = make(CLOCK_MONOTONIC, 0);
	arm(parked, 0, 0, 0, PARKED_S, 0);
	struct timespec now;
	int slow = make(CLOCK_BOOTTIME, 0);
	clock_gettime(CLOCK_BOOTTIME, &now);
	int64_t slow_deadline = ns(now) + (int64_t)SLOW_S * 1000000000;
	arm(slow, 0, SLOW_S, 0, 2 * SLOW_S, 0);
	clock_gettime(CLOCK_MONOTONIC, &now);
	int64_t deadline = ns(now) + (int64_t)ABS_S * 1000000000;
	int abs = make(CLOCK_MONOTONIC, 0);
	arm(abs, TFD_TIMER_ABSTIME, now.tv_sec + ABS_S, now.tv_nsec, 0, 0);
	clock_gettime(CLOCK_REALTIME, &now);
	int wall = make(CLOCK_REALTIME, 0);
	arm(wall, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, now.tv_sec + WALL_S, now.tv_nsec, 0, 0);
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fast};
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fast, &ev) != 0)
		fail("epoll: %s", strerror(errno));
	int sfd = sigfd(SFD_NONBLOCK, SIGUSR1, 0);
	int sfd2 = sigfd(0, SIGUSR2, SIG40);
	pid_t kid = 0;
	if (with_child && (kid = fork()) == 0)
		child(sfd2);
	if (kid < 0)
		fail("fork: %s", strerror(errno));
	printf("ready clock=%d fast=%d once=%d off=%d parked=%d slow=%d abs=%d wall=%d ep=%d sfd=%d sfd2=%d child=%d\n",
	       clock, fast, once, off, parked, slow, abs, wall, ep, sfd, sfd2, (int)kid);

	long sigs = 0;
	for (long tick = 0;; tick++) {
		uint64_t expired;
		ssize_t n = read(clock, &expired, sizeof expired);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != sizeof expired || expired == 0)
			fail("read the clock timerfd: %zd, %s", n, strerror(errno));
		struct signalfd_siginfo si;
		while ((n = read(sfd, &si, sizeof si)) == sizeof si) {
			if (si.ssi_signo != SIGUSR1)
				fail("signalfd read signal %u, want SIGUSR1", si.ssi_signo);
			sigs++;
		}
		if (n >= 0 || errno != EAGAIN)
			fail("read the signalfd: %zd, %s", n, strerror(errno));
		if (epoll_wait(ep, &ev, 1, 0) != 1 || ev.data.fd != fast || ev.events != EPOLLIN)
			fail("epoll does not report the fast timerfd readable");
		// The deadlines hold on the process's clocks, within what a
		// tick may take.
		check_deadline(abs, CLOCK_MONOTONIC, deadline, "absolute");
		check_deadline(slow, CLOCK_BOOTTIME, slow_deadline, "relative");
		int fl = fcntl(fast, F_GETFL), fdf = fcntl(fast, F_GETFD);
		if (!(fl & O_NONBLOCK) || !(fdf & FD_CLOEXEC))
			fail("fast timerfd: status flags %#x, descriptor flags %#x", fl, fdf);
		if ((fcntl(sfd, F_GETFL) & O_NONBLOCK) == 0 || (fcntl(sfd2, F_GETFL) & O_NONBLOCK) != 0)
			fail("signalfds lost their O_NONBLOCK or gained one");
		printf("tick %ld pid=%d expired=%llu sigs=%ld ok\n", tick, getpid(), (unsigned long long)expired, sigs);
	}
}
