// manyfds: a checkpoint/restore subject holding thousands of descriptors
// in a table as large as its RLIMIT_NOFILE allows, little more. Every
// PERIOD_MS it checks every descriptor, and prints
//   tick N pid=P ok
// or "FAIL ..." and exits 1.
//
// Usage: manyfds DIR COUNT SPARE. It sets its RLIMIT_NOFILE, soft and
// hard, to COUNT + SPARE, and opens descriptors until its table holds
// COUNT, those it was started with included (so that SPARE 0 leaves no
// number free below the limit), one kind after the other in turn:
//   - dups (dup, or fcntl F_DUPFD_CLOEXEC every other time) of one of
//     three files DIR/shared-K, opened once each;
//   - DIR/own opened again (a description of its own), at position I;
//   - the two ends of a pipe holding a byte (the first pipe's swapped);
//   - an eventfd counting I.
// Then, every 97 descriptors, it swaps one with one far away, so that a
// dup is far from its file's first descriptor and a pipe's ends are far
// apart, and closes the next but pipes (holes). It prints
//   ready count=N max=HIGHEST
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 200
#define SHARED 3

enum kind { NONE, DUP, OWN, PIPE_R, PIPE_W, EVENTFD };

// want is what descriptor fd must be: its kind, the descriptor it shares
// an open file description with (itself for the first), the other end of
// its pipe, whether it is close-on-exec, its position or counter, and its
// inode (but for pipes, made anew by a restore).
struct want {
	enum kind kind;
	int leader;
	int partner;
	int cloexec;
	long value;
	dev_t dev;
	ino_t ino;
};

static struct want *wants;
static int limit;

static int same_file(int a, int b) {
	pid_t pid = getpid();
	long r = syscall(SYS_kcmp, pid, pid, KCMP_FILE, a, b);
	if (r < 0)
		fail("kcmp fds %d and %d: %s", a, b, strerror(errno));
	return r == 0;
}

static void record(int fd, enum kind k, int leader, int partner, long value) {
	if (fd < 0)
		fail("open a descriptor of kind %d: %s", k, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0)
		fail("fstat %d: %s", fd, strerror(errno));
	int fl = fcntl(fd, F_GETFD);
	wants[fd] = (struct want){k, leader, partner, (fl & FD_CLOEXEC) != 0, value, st.st_dev, st.st_ino};
}

// move makes descriptor from descriptor to, updating the leaders and
// partners that named it.
static void move(int from, int to) {
	if (dup3(from, to, wants[from].cloexec ? O_CLOEXEC : 0) != to)
		fail("dup3 %d to %d: %s", from, to, strerror(errno));
	close(from);
	wants[to] = wants[from];
	wants[from].kind = NONE;
	for (int fd = 0; fd < limit; fd++) {
		if (wants[fd].kind != NONE && wants[fd].leader == from)
			wants[fd].leader = to;
		if (wants[fd].kind != NONE && wants[fd].partner == from)
			wants[fd].partner = to;
	}
}

// eventfd_count reads an eventfd's counter, which the read resets, and
// puts it back: a dump in between keeps the count in the subject's memory.
static long eventfd_count(int fd) {
	uint64_t count;
	if (read(fd, &count, sizeof count) != sizeof count || write(fd, &count, sizeof count) != sizeof count)
		fail("eventfd %d: %s", fd, strerror(errno));
	return (long)count;
}

// same_pipe reports whether descriptors a and b are ends of one pipe. A
// restore between its two fstat calls makes the pipe anew: the caller
// asks twice.
static int same_pipe(int a, int b) {
	struct stat sa, sb;
	if (fstat(a, &sa) != 0 || fstat(b, &sb) != 0)
		fail("fstat pipe fds %d and %d: %s", a, b, strerror(errno));
	return sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}

static void check(int fd) {
	struct want *w = &wants[fd];
	struct stat st;
	if (fstat(fd, &st) != 0)
		fail("fd %d (kind %d): %s", fd, w->kind, strerror(errno));
	if (w->kind == PIPE_R || w->kind == PIPE_W) {
		if (!same_pipe(fd, w->partner) && !same_pipe(fd, w->partner))
			fail("pipe fds %d and %d are not ends of one pipe", fd, w->partner);
	} else if (st.st_ino != w->ino || st.st_dev != w->dev)
		fail("fd %d (kind %d): inode %lu, want %lu", fd, w->kind, (unsigned long)st.st_ino, (unsigned long)w->ino);
	int cloexec = (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
	if (cloexec != w->cloexec)
		fail("fd %d (kind %d): close-on-exec %d, want %d", fd, w->kind, cloexec, w->cloexec);
	if (w->leader != fd && !same_file(fd, w->leader))
		fail("fd %d (kind %d) does not share fd %d's open file description", fd, w->kind, w->leader);
	switch (w->kind) {
	case OWN:
		if (lseek(fd, 0, SEEK_CUR) != w->value)
			fail("fd %d at %ld, want %ld", fd, (long)lseek(fd, 0, SEEK_CUR), w->value);
		break;
	case EVENTFD:
		{
			long count = eventfd_count(fd);
			if (count != w->value)
				fail("eventfd %d counts %ld, want %ld", fd, count, w->value);
		}
		break;
	default:
		break;
	}
}

int main(int argc, char **argv) {
	if (argc != 4)
		fail("usage: manyfds DIR COUNT SPARE");
	setvbuf(stdout, NULL, _IOLBF, 0);
	int count = atoi(argv[2]);
	limit = count + atoi(argv[3]);
	struct rlimit rl = {limit, limit};
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		fail("setrlimit RLIMIT_NOFILE %d: %s", limit, strerror(errno));
	wants = calloc(limit, sizeof *wants);
	char path[4096];
	int shared[SHARED];
	for (int k = 0; k < SHARED; k++) {
		snprintf(path, sizeof path, "%s/shared-%d", argv[1], k);
		shared[k] = open(path, O_RDWR | O_CREAT, 0600);
		record(shared[k], DUP, shared[k], -1, 0);
	}
	snprintf(path, sizeof path, "%s/own", argv[1]);
	int own = open(path, O_RDWR | O_CREAT, 0600);
	if (own < 0 || ftruncate(own, count) != 0)
		fail("make %s: %s", path, strerror(errno));
	record(own, OWN, own, -1, 0);
	int open_fds = 0;
	for (int fd = 0; fd < limit; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			open_fds++;
	for (int i = 0, n = open_fds; n < count; i++) {
		int fd, p[2];
		switch (i % 4) {
		case 0:
			if (i % 8 == 0)
				fd = dup(shared[i % SHARED]);
			else
				fd = fcntl(shared[i % SHARED], F_DUPFD_CLOEXEC, 0);
			record(fd, DUP, shared[i % SHARED], -1, 0);
			n++;
			break;
		case 1:
			fd = open(path, O_RDONLY | (i % 3 ? O_CLOEXEC : 0));
			if (fd < 0 || lseek(fd, i, SEEK_SET) != i)
				fail("open %s at %d: %s", path, i, strerror(errno));
			record(fd, OWN, fd, -1, i);
			n++;
			break;
		case 2:
			if (n + 2 > count)
				continue;
			if (pipe2(p, i % 3 ? O_CLOEXEC : 0) != 0 || write(p[1], "x", 1) != 1)
				fail("pipe: %s", strerror(errno));
			record(p[0], PIPE_R, p[0], p[1], 0);
			record(p[1], PIPE_W, p[1], p[0], 0);
			n += 2;
			if (i == 2) { // the first pipe's read end above its write end
				move(p[0], limit - 1);
				move(p[1], p[0]);
				move(limit - 1, p[1]);
			}
			break;
		case 3:
			fd = eventfd(i, i % 5 ? EFD_CLOEXEC : 0);
			record(fd, EVENTFD, fd, -1, i);
			n++;
			break;
		}
	}
	// Holes, and pairs swapped across the table. The swap goes through
	// the number of the hole just made.
	int top = 0;
	for (int fd = 0; fd < limit; fd++)
		if (wants[fd].kind != NONE)
			top = fd;
	for (int fd = SHARED + 4; fd < top / 2; fd += 97) {
		if (wants[fd].kind == NONE || wants[top - fd].kind == NONE)
			continue;
		int far = top - fd;
		int hole = -1;
		for (int o = 0; o < limit && hole < 0; o++)
			if (wants[o].kind == NONE && fcntl(o, F_GETFD) < 0)
				hole = o;
		if (hole < 0)
			break;
		move(fd, hole);
		move(far, fd);
		move(hole, far);
		// A hole: only the three shared files lead others, and a pipe
		// keeps both its ends.
		int h = fd + 1;
		while (wants[h].kind == PIPE_R || wants[h].kind == PIPE_W)
			h++;
		close(h);
		wants[h].kind = NONE;
	}
	int n = 0, max = 0;
	for (int fd = 0; fd < limit; fd++) {
		if (wants[fd].kind != NONE && fcntl(fd, F_GETFD) < 0)
			wants[fd].kind = NONE;
		if (wants[fd].kind != NONE)
			n++, max = fd;
	}
	printf("ready count=%d max=%d\n", n, max);
	for (long tick = 0;; tick++) {
		for (int fd = 0; fd < limit; fd++)
			if (wants[fd].kind != NONE)
				check(fd);
		printf("tick %ld pid=%d ok\n", tick, getpid());
		struct timespec ts = {0, PERIOD_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
}
