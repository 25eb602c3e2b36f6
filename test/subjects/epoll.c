// epoll: a checkpoint/restore subject holding eventfds and epolls, which
// checks every tick, without changing them, that they are what it made.
//
// It holds:
//   efd      an eventfd whose counter is EFD_COUNT (above 2^32)
//   efd_dup  a dup of efd, registered in the epoll under its own number
//   sem      an EFD_SEMAPHORE eventfd whose counter is SEM_COUNT
//   pipe_r   the read end of a pipe holding PIPE_DATA
//   pipe_w   its write end, registered edge-triggered for EPOLLOUT
//   empty_r  the read end of a pipe, empty unless a test writes into
//            empty_w, its write end, to wake the sleeping epoll
//   epfd     an epoll watching all of the above but empty_w
//   sleep_ep an epoll watching only empty_r, which it sleeps in: so that a
//            dump mostly finds it blocked in epoll_wait
//
// Usage: epoll [closed|reused|twice|orphan|fork]
//   closed   also register a readable eventfd in epfd under a number
//            (stale), then move it to another (moved): the registration
//            stays, under a number that is closed
//   reused   the same, then open another eventfd at that number
//   twice    as closed, the eventfd also registered under moved
//   orphan   register an eventfd under stale, not readable, and close it
//            once epfd reports it readable: the test makes it so by
//            writing into its own duplicate of it, which then is the only
//            descriptor of the file left
//   fork     fork a child that holds epfd and has closed the pipe and
//            the eventfds epfd watches (as redis's child that saves its
//            data does with its sockets), and sleeps until the subject
//            ends; ready says child=PID
//
// Once set up it prints
//   ready efd=FD efd_dup=FD sem=FD pipe_r=FD pipe_w=FD empty_r=FD empty_w=FD epfd=FD sleep_ep=FD stale=FD moved=FD
// then every PERIOD_MS
//   tick N pid=P ready=K woken=W orphaned=O ok
// where K is how many registrations epoll_wait on epfd reported, W how
// many times data in empty_r woke the sleep, and O 1 once the orphan's
// descriptor is closed; or "FAIL ..." and exits 1 when a check fails.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20
#define EFD_COUNT 0x123456789ULL
#define SEM_COUNT 3
#define PIPE_DATA "data in a pipe an epoll watches"

// The epoll data of each registration: a tag and the descriptor.
#define TAG_EFD 0xefd0000000000000ULL
#define TAG_EFD_DUP 0xefdd000000000000ULL
#define TAG_SEM 0x5e30000000000000ULL
#define TAG_PIPE_R 0x91be000000000000ULL
#define TAG_PIPE_W 0x91bf000000000000ULL
#define TAG_EMPTY 0xe3b7000000000000ULL
#define TAG_STALE 0x57a1000000000000ULL

static void add(int ep, int fd, uint32_t events, uint64_t tag) {
	struct epoll_event ev = {.events = events, .data.u64 = tag | (uint64_t)fd};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
		fail("epoll_ctl add fd %d: %s", fd, strerror(errno));
}

// fdinfo returns the value of key in /proc/self/fdinfo/FD: reading an
// eventfd's counter there leaves it as it is.
static char *fdinfo(int fd, const char *key, char *buf, size_t len) {
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "re");
	if (!f)
		fail("open %s: %s", path, strerror(errno));
	size_t kl = strlen(key);
	char *found = NULL;
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			snprintf(buf, len, "%s", line + kl + 1);
			found = buf;
			break;
		}
	}
	fclose(f);
	if (!found)
		fail("fd %d: no %s in fdinfo", fd, key);
	return found;
}

static void check_count(int fd, uint64_t want, int semaphore) {
	char buf[128];
	uint64_t got = strtoull(fdinfo(fd, "eventfd-count", buf, sizeof buf), NULL, 16);
	if (got != want)
		fail("eventfd %d: counter %#" PRIx64 ", want %#" PRIx64, fd, got, (uint64_t)want);
	if (atoi(fdinfo(fd, "eventfd-semaphore", buf, sizeof buf)) != semaphore)
		fail("eventfd %d: semaphore mode is not %d", fd, semaphore);
}

static void check_flags(int fd, int want, const char *what) {
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_NONBLOCK) != (want & O_NONBLOCK))
		fail("%s fd %d: status flags %#x, want O_NONBLOCK %s", what, fd, fl, want & O_NONBLOCK ? "set" : "clear");
	int fdf = fcntl(fd, F_GETFD);
	if (fdf < 0 || (fdf & FD_CLOEXEC) != (want & O_CLOEXEC ? FD_CLOEXEC : 0))
		fail("%s fd %d: descriptor flags %#x", what, fd, fdf);
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (efd < 0)
		fail("eventfd: %s", strerror(errno));
	uint64_t v = EFD_COUNT;
	if (write(efd, &v, sizeof v) != sizeof v)
		fail("write eventfd: %s", strerror(errno));
	int efd_dup = dup(efd);
	int sem = eventfd(SEM_COUNT, EFD_SEMAPHORE);
	int p[2], q[2];
	if (efd_dup < 0 || sem < 0 || pipe2(p, O_NONBLOCK) != 0 || pipe(q) != 0)
		fail("make descriptors: %s", strerror(errno));
	if (write(p[1], PIPE_DATA, strlen(PIPE_DATA)) != (ssize_t)strlen(PIPE_DATA))
		fail("write pipe: %s", strerror(errno));
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int sleep_ep = epoll_create1(0);
	if (ep < 0 || sleep_ep < 0)
		fail("epoll_create1: %s", strerror(errno));
	add(ep, efd, EPOLLIN, TAG_EFD);
	add(ep, efd_dup, EPOLLIN | EPOLLRDHUP, TAG_EFD_DUP);
	add(ep, sem, EPOLLIN | EPOLLOUT, TAG_SEM);
	add(ep, p[0], EPOLLIN, TAG_PIPE_R);
	add(ep, p[1], EPOLLOUT | EPOLLET, TAG_PIPE_W);
	add(ep, q[0], EPOLLIN, TAG_EMPTY);
	add(sleep_ep, q[0], EPOLLIN, TAG_EMPTY);
	// A registration whose number no longer refers to its file.
	int stale = -1, moved = -1, orphan = 0, orphaned = 0, twice = 0;
	int forked = argc > 1 && !strcmp(argv[1], "fork");
	if (argc > 1 && !forked) {
		orphan = !strcmp(argv[1], "orphan");
		twice = !strcmp(argv[1], "twice");
		if (strcmp(argv[1], "closed") && strcmp(argv[1], "reused") && !twice && !orphan)
			fail("usage: epoll [closed|reused|twice|orphan|fork]");
		stale = eventfd(!orphan, 0);
		add(ep, stale, EPOLLIN, TAG_STALE);
		if (!orphan && ((moved = dup(stale)) < 0 || close(stale) != 0))
			fail("move eventfd: %s", strerror(errno));
		if (!strcmp(argv[1], "reused") && eventfd(0, 0) != stale)
			fail("fd %d not reused", stale);
		if (twice)
			add(ep, moved, EPOLLIN, TAG_STALE);
	}
	pid_t child = 0;
	if (forked) {
		pid_t parent = getpid();
		if ((child = fork()) < 0)
			fail("fork: %s", strerror(errno));
		if (child == 0) {
			close(efd), close(efd_dup), close(sem), close(p[0]), close(p[1]);
			while (getppid() == parent)
				usleep(20000);
			_exit(0);
		}
	}
	printf("ready efd=%d efd_dup=%d sem=%d pipe_r=%d pipe_w=%d empty_r=%d empty_w=%d epfd=%d sleep_ep=%d stale=%d "
	       "moved=%d child=%d\n",
	       efd, efd_dup, sem, p[0], p[1], q[0], q[1], ep, sleep_ep, stale, moved, child);

	long woken = 0;
	for (long tick = 0;; tick++) {
		struct epoll_event evs[16];
		// Sleep in the epoll that has nothing ready. epoll_wait is never
		// restarted: a ptrace stop (a dump freezing it) ends it with
		// EINTR, as a stop signal would.
		// A byte written into the empty pipe from outside wakes it.
		int n = epoll_wait(sleep_ep, evs, 16, PERIOD_MS);
		if (n < 0 && errno != EINTR)
			fail("sleeping epoll_wait: %s", strerror(errno));
		if (n > 0) {
			if (n != 1 || evs[0].data.u64 != (TAG_EMPTY | q[0]) || evs[0].events != EPOLLIN)
				fail("sleeping epoll_wait reported %d events, events %#x data %#" PRIx64, n, evs[0].events,
				     evs[0].data.u64);
			char buf[64];
			if (read(q[0], buf, sizeof buf) <= 0)
				fail("read the woken pipe: %s", strerror(errno));
			woken++;
		}
		n = epoll_wait(ep, evs, 16, 0);
		if (n < 0)
			fail("epoll_wait: %s", strerror(errno));
		// Level-triggered registrations are reported every time, the
		// edge-triggered one only after it was (re)armed.
		int seen = 0;
		for (int i = 0; i < n; i++) {
			uint64_t d = evs[i].data.u64;
			uint32_t e = evs[i].events;
			if (d == (TAG_EFD | efd) && e == EPOLLIN)
				seen |= 1;
			else if (d == (TAG_EFD_DUP | efd_dup) && e == EPOLLIN)
				seen |= 2;
			else if (d == (TAG_SEM | sem) && e == (EPOLLIN | EPOLLOUT))
				seen |= 4;
			else if (d == (TAG_PIPE_R | p[0]) && e == EPOLLIN)
				seen |= 8;
			else if (d == (TAG_PIPE_W | p[1]) && e == EPOLLOUT)
				;
			else if (d == (TAG_EMPTY | q[0]) && e == EPOLLIN)
				; // woken between the two waits
			else if (stale >= 0 && d == (TAG_STALE | stale) && e == EPOLLIN)
				seen |= 16;
			else if (twice && d == (TAG_STALE | moved) && e == EPOLLIN)
				;
			else
				fail("epoll_wait reported events %#x data %#" PRIx64, e, d);
		}
		// The moved eventfd is readable; the orphan once the test wrote
		// into it, which closes it here.
		int want = 15;
		if (stale >= 0 && !orphan)
			want |= 16;
		if (orphan && (seen & 16) && !orphaned) {
			if (close(stale) != 0)
				fail("close the orphan: %s", strerror(errno));
			orphaned = 1;
		}
		if (orphaned)
			want |= 16;
		if (seen != want)
			fail("epoll_wait reported %d events, mask %#x, want %#x", n, seen, want);
		check_count(efd, EFD_COUNT, 0);
		check_count(sem, SEM_COUNT, 1);
		int queued = 0;
		if (ioctl(p[0], FIONREAD, &queued) != 0 || queued != (int)strlen(PIPE_DATA))
			fail("pipe holds %d bytes, want %zu", queued, strlen(PIPE_DATA));
		check_flags(efd, O_NONBLOCK | O_CLOEXEC, "eventfd");
		check_flags(efd_dup, O_NONBLOCK, "eventfd dup");
		check_flags(sem, 0, "semaphore eventfd");
		check_flags(ep, O_CLOEXEC, "epoll");
		check_flags(sleep_ep, 0, "sleeping epoll");
		printf("tick %ld pid=%d ready=%d woken=%ld orphaned=%d ok\n", tick, getpid(), n, woken, orphaned);
	}
}
