// pipes: a checkpoint/restore subject holding pipes and FIFOs whose open
// file descriptions, sizes and data a restore must keep. Every PERIOD_MS
// it checks them all, without changing them, and prints
//   tick N pid=P ok
// or "FAIL ..." and exits 1.
//
// Usage: pipes DIR [packets|async|async-outside]. It holds:
//   pr       the read end of a pipe holding PIPE_DATA
//   pr_dup   a dup of pr (one open file description)
//   pr_own   pr reopened through /proc (a description of its own),
//            O_NONBLOCK set on it alone
//   pw       the write end, O_NONBLOCK
//   pw_dup   a dup of pw, so O_NONBLOCK too
//   pw_own   pw reopened through /proc, blocking
//   big_r    a pipe of BIG_SIZE bytes holding BIG_DATA bytes, more than a
//   big_w    pipe of the default size holds
//   small_r  an empty pipe of SMALL_SIZE bytes
//   pkt_r    an empty packet-mode pipe (O_DIRECT on its write end)
//   pkt_w    (with packets: holding two packets, which a dump refuses)
// (with async: pr is O_ASYNC, its owner the process, signal SIGUSR2,
// which the process ignores; big_w's owner a thread of the process,
// printed as owner_tid, and small_r's the process's group; with
// async-outside, pr's owner is the parent instead, outside a checkpoint
// of the process)
//   fifo     DIR/fifo opened read-write, of FIFO_SIZE bytes, holding
//            FIFO_DATA
//   ghost_r  DIR/ghost, a FIFO of mode 0640 holding GHOST_DATA, opened
//   ghost_w  read-only and write-only, then unlinked
//   wronly   DIR/wronly, a FIFO holding GHOST_DATA, opened write-only
//            (its reader gone), then unlinked
// and prints "ready NAME=FD ...".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <linux/kcmp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20
#define PIPE_DATA "unread data in a pipe with three descriptions"
#define FIFO_DATA "unread data in a FIFO of its own size"
#define GHOST_DATA "unread data in an unlinked FIFO"
#define BIG_SIZE (1 << 20)
#define BIG_DATA (200 << 10)
#define SMALL_SIZE (256 << 10)
#define FIFO_SIZE (128 << 10)
#define DEFAULT_SIZE (64 << 10)
// The kernel's O_LARGEFILE, which open() sets and pipe() does not (glibc's
// is 0 on x86_64).
#define LARGEFILE 0100000

static uint8_t pat(size_t i) { return (uint8_t)(i * 2654435761u >> 13); }

static void xwrite(int fd, const void *b, size_t n, const char *what) {
	if (write(fd, b, n) != (ssize_t)n)
		fail("write %s: %s", what, strerror(errno));
}

static int xopen(const char *path, int flags) {
	int fd = open(path, flags);
	if (fd < 0)
		fail("open %s: %s", path, strerror(errno));
	return fd;
}

static int reopen(int fd, int flags) {
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	return xopen(path, flags);
}

static void setfl(int fd, int add) {
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | add) != 0)
		fail("fcntl fd %d: %s", fd, strerror(errno));
}

static void setsize(int fd, int size) {
	if (fcntl(fd, F_SETPIPE_SZ, size) != size)
		fail("set the size of fd %d to %d: %s", fd, size, strerror(errno));
}

// check checks a descriptor: its access mode and status flags, its pipe's
// size and how many bytes it holds.
static void check(const char *name, int fd, int flags, int size, int queued) {
	int fl = fcntl(fd, F_GETFL);
	int mask = O_ACCMODE | O_NONBLOCK | O_DIRECT | LARGEFILE;
	if (fl < 0 || (fl & mask) != flags)
		fail("%s fd %d: flags %#o, want %#o", name, fd, fl & mask, flags);
	int sz = fcntl(fd, F_GETPIPE_SZ);
	if (sz != size)
		fail("%s fd %d: pipe size %d, want %d", name, fd, sz, size);
	int n = -1;
	if (ioctl(fd, FIONREAD, &n) != 0 || n != queued)
		fail("%s fd %d: holds %d bytes, want %d", name, fd, n, queued);
}

// peek checks what a read end holds without taking it: tee() into a pipe
// of the subject's own, read back from there.
static void peek(const char *name, int fd, const uint8_t *want, size_t n) {
	int p[2];
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0)
		fail("pipe: %s", strerror(errno));
	setsize(p[1], BIG_SIZE);
	if (tee(fd, p[1], n, SPLICE_F_NONBLOCK) != (ssize_t)n)
		fail("tee %s fd %d: %s", name, fd, strerror(errno));
	static uint8_t buf[BIG_DATA];
	if (read(p[0], buf, n) != (ssize_t)n || memcmp(buf, want, n) != 0)
		fail("%s fd %d: data differs", name, fd);
	close(p[0]);
	close(p[1]);
}

static int same_file(int a, int b) {
	pid_t pid = getpid();
	long r = syscall(SYS_kcmp, pid, pid, KCMP_FILE, a, b);
	if (r < 0)
		fail("kcmp fds %d and %d: %s", a, b, strerror(errno));
	return r == 0;
}

// shares checks which descriptors share an open file description.
static void shares(const char *what, int a, int b, int want) {
	if (same_file(a, b) != want)
		fail("%s: fds %d and %d %s one open file description", what, a, b, want ? "do not share" : "share");
}

// sleeper_tid is the thread that owns big_w's signals (with async).
static pid_t sleeper_tid;

static void *sleeper(void *arg) {
	(void)arg;
	__atomic_store_n(&sleeper_tid, gettid(), __ATOMIC_RELEASE);
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv) {
	if (argc != 2 && (argc != 3 || (strcmp(argv[2], "packets") && strcmp(argv[2], "async") && strcmp(argv[2], "async-outside"))))
		fail("usage: pipes DIR [packets|async|async-outside]");
	int pkt_bytes = argc == 3 && !strcmp(argv[2], "packets") ? 4 : 0; // two packets of 2 bytes
	int async = argc == 3 && !strncmp(argv[2], "async", 5), outside = async && argv[2][5];
	setvbuf(stdout, NULL, _IOLBF, 0);
	char fifo_path[4096], ghost_path[4096], wronly_path[4096];
	snprintf(fifo_path, sizeof fifo_path, "%s/fifo", argv[1]);
	snprintf(ghost_path, sizeof ghost_path, "%s/ghost", argv[1]);
	snprintf(wronly_path, sizeof wronly_path, "%s/wronly", argv[1]);

	int p[2], big[2], small[2], pkt[2];
	if (pipe(p) != 0 || pipe2(big, O_NONBLOCK) != 0 || pipe(small) != 0 || pipe2(pkt, O_DIRECT) != 0)
		fail("pipe: %s", strerror(errno));
	xwrite(p[1], PIPE_DATA, strlen(PIPE_DATA), "pipe");
	int pr = p[0], pw = p[1];
	int pr_dup = dup(pr), pw_dup = dup(pw);
	int pr_own = reopen(pr, O_RDONLY), pw_own = reopen(pw, O_WRONLY);
	setfl(pr_own, O_NONBLOCK);
	setfl(pw, O_NONBLOCK);
	if (async && (signal(SIGUSR2, SIG_IGN) == SIG_ERR || fcntl(pr, F_SETOWN, outside ? getppid() : getpid()) || fcntl(pr, F_SETSIG, SIGUSR2)))
		fail("F_SETOWN: %s", strerror(errno));
	if (async)
		setfl(pr, O_ASYNC);

	setsize(big[1], BIG_SIZE);
	static uint8_t big_data[BIG_DATA];
	for (size_t i = 0; i < BIG_DATA; i++)
		big_data[i] = pat(i);
	xwrite(big[1], big_data, BIG_DATA, "big pipe");
	setsize(small[0], SMALL_SIZE);
	pid_t owner_tid = 0;
	if (async) {
		pthread_t t;
		if (pthread_create(&t, NULL, sleeper, NULL))
			fail("pthread_create");
		while (!(owner_tid = __atomic_load_n(&sleeper_tid, __ATOMIC_ACQUIRE)))
			usleep(1000);
		struct f_owner_ex thread = {F_OWNER_TID, owner_tid}, group = {F_OWNER_PGRP, getpgrp()};
		if (fcntl(big[1], F_SETOWN_EX, &thread) || fcntl(small[0], F_SETOWN_EX, &group))
			fail("F_SETOWN_EX: %s", strerror(errno));
	}
	if (pkt_bytes) {
		xwrite(pkt[1], "p1", 2, "packet");
		xwrite(pkt[1], "p2", 2, "packet");
	}

	if (mkfifo(fifo_path, 0600) != 0)
		fail("mkfifo %s: %s", fifo_path, strerror(errno));
	int fifo = xopen(fifo_path, O_RDWR);
	setsize(fifo, FIFO_SIZE);
	xwrite(fifo, FIFO_DATA, strlen(FIFO_DATA), "FIFO");

	if (mkfifo(ghost_path, 0640) != 0 || chmod(ghost_path, 0640) != 0)
		fail("mkfifo %s: %s", ghost_path, strerror(errno));
	int ghost_r = xopen(ghost_path, O_RDONLY | O_NONBLOCK);
	int ghost_w = xopen(ghost_path, O_WRONLY);
	xwrite(ghost_w, GHOST_DATA, strlen(GHOST_DATA), "unlinked FIFO");
	if (mkfifo(wronly_path, 0600) != 0)
		fail("mkfifo %s: %s", wronly_path, strerror(errno));
	int reader = xopen(wronly_path, O_RDONLY | O_NONBLOCK);
	int wronly = xopen(wronly_path, O_WRONLY);
	xwrite(wronly, GHOST_DATA, strlen(GHOST_DATA), "write-only FIFO");
	close(reader);
	if (unlink(ghost_path) != 0 || unlink(wronly_path) != 0)
		fail("unlink: %s", strerror(errno));

	printf("ready pr=%d pr_dup=%d pr_own=%d pw=%d pw_dup=%d pw_own=%d big_r=%d big_w=%d small_r=%d pkt_r=%d pkt_w=%d "
	       "fifo=%d ghost_r=%d ghost_w=%d wronly=%d owner_tid=%d\n",
	       pr, pr_dup, pr_own, pw, pw_dup, pw_own, big[0], big[1], small[0], pkt[0], pkt[1], fifo, ghost_r, ghost_w,
	       wronly, (int)owner_tid);

	int n = strlen(PIPE_DATA), g = strlen(GHOST_DATA);
	for (long tick = 0;; tick++) {
		check("pr", pr, O_RDONLY, DEFAULT_SIZE, n);
		check("pr_dup", pr_dup, O_RDONLY, DEFAULT_SIZE, n);
		check("pr_own", pr_own, O_RDONLY | O_NONBLOCK | LARGEFILE, DEFAULT_SIZE, n);
		check("pw", pw, O_WRONLY | O_NONBLOCK, DEFAULT_SIZE, n);
		check("pw_dup", pw_dup, O_WRONLY | O_NONBLOCK, DEFAULT_SIZE, n);
		check("pw_own", pw_own, O_WRONLY | LARGEFILE, DEFAULT_SIZE, n);
		shares("pipe read end", pr, pr_dup, 1);
		shares("pipe read end", pr, pr_own, 0);
		shares("pipe write end", pw, pw_dup, 1);
		shares("pipe write end", pw, pw_own, 0);
		peek("pr", pr, (const uint8_t *)PIPE_DATA, n);

		check("big_r", big[0], O_RDONLY | O_NONBLOCK, BIG_SIZE, BIG_DATA);
		check("big_w", big[1], O_WRONLY | O_NONBLOCK, BIG_SIZE, BIG_DATA);
		peek("big_r", big[0], big_data, BIG_DATA);
		check("small_r", small[0], O_RDONLY, SMALL_SIZE, 0);
		check("pkt_r", pkt[0], O_RDONLY, DEFAULT_SIZE, pkt_bytes); // pipe2 sets O_DIRECT on the write end
		check("pkt_w", pkt[1], O_WRONLY | O_DIRECT, DEFAULT_SIZE, pkt_bytes);

		check("fifo", fifo, O_RDWR | LARGEFILE, FIFO_SIZE, strlen(FIFO_DATA));
		peek("fifo", fifo, (const uint8_t *)FIFO_DATA, strlen(FIFO_DATA));

		check("ghost_r", ghost_r, O_RDONLY | O_NONBLOCK | LARGEFILE, DEFAULT_SIZE, g);
		check("ghost_w", ghost_w, O_WRONLY | LARGEFILE, DEFAULT_SIZE, g);
		check("wronly", wronly, O_WRONLY | LARGEFILE, DEFAULT_SIZE, g);
		peek("ghost_r", ghost_r, (const uint8_t *)GHOST_DATA, g);
		struct stat a, b, w;
		if (fstat(ghost_r, &a) != 0 || fstat(ghost_w, &b) != 0 || fstat(wronly, &w) != 0)
			fail("fstat: %s", strerror(errno));
		if (a.st_ino != b.st_ino || a.st_dev != b.st_dev)
			fail("ghost_r and ghost_w are different FIFOs");
		if (a.st_mode != (S_IFIFO | 0640) || a.st_nlink != 0 || w.st_nlink != 0)
			fail("unlinked FIFOs: mode %#o, links %lu and %lu", a.st_mode, (unsigned long)a.st_nlink,
			     (unsigned long)w.st_nlink);

		printf("tick %ld pid=%d ok\n", tick, getpid());
		struct timespec ts = {0, PERIOD_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
}
