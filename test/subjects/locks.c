// locks: a checkpoint/restore subject holding every kind of file lock a
// restore must take again, in files of DIR:
//   posix    a POSIX write lock on bytes 0-9 and a POSIX read lock from
//            byte 100 to the end of the file (fcntl F_SETLK)
//   ofd      an OFD write lock on bytes 5-14 (F_OFD_SETLK), its open file
//            description also open as ofd_dup
//   flock    an exclusive flock
//   shared   a shared flock
//
// Usage: locks DIR [lease|mapped|mapped2|mapped-ofd]
//   lease       also hold a read lease (F_SETLEASE) on DIR/lease, open
//               read-only, and a write lease on DIR/wlease, open for
//               reading and writing, whose breaks it asks to be told of
//               with SIGUSR2 (F_SETSIG); it checks them every tick
//               (F_GETLEASE, F_GETSIG) until it is told of a break, which
//               it lets run its course
//   mapped      also hold an exclusive flock on DIR/mapped through a
//               shared mapping of it only, its descriptor closed (as the
//               JVM holds its hsperfdata file)
//   mapped2     the same, and a second mapping of DIR/mapped, opened apart
//   mapped-ofd  an OFD write lock on DIR/mapped instead, through a
//               private mapping of it
//
// Once set up it prints
//   ready posix=FD ofd=FD ofd_dup=FD flock=FD shared=FD [lease=FD wlease=FD]
// then every PERIOD_MS
//   tick N pid=P locks=K unlocked=U breaks=B ok
// where K counts the lock lines of its descriptors' fdinfo: 5 while it
// holds its locks, 0 once it has released them (U=1), which SIGUSR1 asks
// for; any other count prints "FAIL ..." and exits 1. B counts the lease
// break signals received (SIGIO for DIR/lease, SIGUSR2 for DIR/wlease).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20

static volatile sig_atomic_t unlock_asked, breaks;

static void on_usr1(int sig) {
	(void)sig;
	unlock_asked = 1;
}

static void on_break(int sig) {
	(void)sig;
	breaks++;
}

// check_lease fails unless fd holds a lease of type want whose breaks
// are signalled with sig (0: SIGIO).
static void check_lease(int fd, int want, int sig) {
	int got = fcntl(fd, F_GETLEASE), got_sig = fcntl(fd, F_GETSIG);
	if (got != want || got_sig != sig)
		fail("fd %d: lease %d signal %d, want lease %d signal %d", fd, got, got_sig, want, sig);
}

static int open_in(const char *dir, const char *name, int flags) {
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, flags | O_CREAT, 0600);
	if (fd < 0)
		fail("open %s: %s", path, strerror(errno));
	return fd;
}

static void lock(int fd, int cmd, short type, off_t start, off_t len) {
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	if (fcntl(fd, cmd, &fl) != 0)
		fail("fcntl %d on fd %d, type %d, %lld+%lld: %s", cmd, fd, type, (long long)start, (long long)len,
		     strerror(errno));
}

static void do_flock(int fd, int how) {
	if (flock(fd, how | LOCK_NB) != 0)
		fail("flock fd %d, %d: %s", fd, how, strerror(errno));
}

// count_locks counts the "lock:" lines of the fdinfo of fd.
static int count_locks(int fd) {
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "re");
	if (!f)
		fail("open %s: %s", path, strerror(errno));
	int n = 0;
	while (fgets(line, sizeof line, f))
		n += strncmp(line, "lock:", 5) == 0;
	fclose(f);
	return n;
}

int main(int argc, char **argv) {
	if (argc < 2)
		fail("usage: locks DIR [lease|mapped|mapped2|mapped-ofd]");
	const char *dir = argv[1], *mode = argc > 2 ? argv[2] : "";
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct sigaction sa = {.sa_handler = on_usr1};
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		fail("sigaction: %s", strerror(errno));

	int posix = open_in(dir, "posix", O_RDWR);
	lock(posix, F_SETLK, F_WRLCK, 0, 10);
	lock(posix, F_SETLK, F_RDLCK, 100, 0);
	int ofd = open_in(dir, "ofd", O_RDWR);
	lock(ofd, F_OFD_SETLK, F_WRLCK, 5, 10);
	int ofd_dup = dup(ofd);
	int fl = open_in(dir, "flock", O_RDWR);
	do_flock(fl, LOCK_EX);
	int shared = open_in(dir, "shared", O_RDONLY);
	do_flock(shared, LOCK_SH);
	int lease = -1, wlease = -1;
	if (strcmp(mode, "lease") == 0) {
		struct sigaction br = {.sa_handler = on_break};
		if (sigaction(SIGIO, &br, NULL) != 0 || sigaction(SIGUSR2, &br, NULL) != 0)
			fail("sigaction: %s", strerror(errno));
		lease = open_in(dir, "lease", O_RDONLY);
		wlease = open_in(dir, "wlease", O_RDWR);
		if (fcntl(lease, F_SETLEASE, F_RDLCK) != 0 || fcntl(wlease, F_SETLEASE, F_WRLCK) != 0 ||
		    fcntl(wlease, F_SETSIG, SIGUSR2) != 0)
			fail("F_SETLEASE: %s", strerror(errno));
	} else if (strncmp(mode, "mapped", 6) == 0) {
		int ofd_lock = strcmp(mode, "mapped-ofd") == 0;
		for (int i = strcmp(mode, "mapped2") == 0 ? 2 : 1; i > 0; i--) {
			int m = open_in(dir, "mapped", O_RDWR);
			if (i == 1 && ofd_lock)
				lock(m, F_OFD_SETLK, F_WRLCK, 0, 0);
			else if (i == 1)
				do_flock(m, LOCK_EX);
			if (ftruncate(m, 4096) != 0 ||
			    mmap(NULL, 4096, PROT_READ, ofd_lock ? MAP_PRIVATE : MAP_SHARED, m, 0) == MAP_FAILED)
				fail("map %s/mapped: %s", dir, strerror(errno));
			close(m);
		}
	}
	printf("ready posix=%d ofd=%d ofd_dup=%d flock=%d shared=%d", posix, ofd, ofd_dup, fl, shared);
	if (lease >= 0)
		printf(" lease=%d wlease=%d", lease, wlease);
	printf("\n");

	int unlocked = 0;
	for (unsigned long tick = 0;; tick++) {
		if (unlock_asked && !unlocked) {
			lock(posix, F_SETLK, F_UNLCK, 0, 0);
			lock(ofd, F_OFD_SETLK, F_UNLCK, 0, 0);
			if (flock(fl, LOCK_UN) != 0 || flock(shared, LOCK_UN) != 0)
				fail("flock LOCK_UN: %s", strerror(errno));
			unlocked = 1;
		}
		int n = count_locks(posix) + count_locks(ofd) + count_locks(fl) + count_locks(shared);
		if (n != (unlocked ? 0 : 5))
			fail("tick %lu: %d locks, unlocked=%d", tick, n, unlocked);
		if (lease >= 0 && !breaks) {
			check_lease(lease, F_RDLCK, 0);
			check_lease(wlease, F_WRLCK, SIGUSR2);
		}
		printf("tick %lu pid=%d locks=%d unlocked=%d breaks=%d ok\n", tick, getpid(), n, unlocked, (int)breaks);
		struct timespec d = {0, PERIOD_MS * 1000000L};
		while (nanosleep(&d, &d) != 0 && errno == EINTR)
			;
	}
}
