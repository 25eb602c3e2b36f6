// fileid: a checkpoint/restore subject that runs as nobody with files of
// its own and one of root's open:
//   fileid OWN ROOT
// opens ROOT read-only while still root, drops to uid and gid 65534 (no
// supplementary groups), then opens OWN read-write and its own
// /proc/PID/stat, makes the symbolic link OWN.link to ROOT and opens the
// link itself (O_PATH|O_NOFOLLOW), which it checks every tick (still a
// link to ROOT, with those flags). Once set up it prints
//   ready own=FD root=FD
// then every PERIOD_MS
//   tick N uid=U own=WORD root=WORD proc=PID ok
// with the first word of each file as read through its descriptor, and
// "FAIL ..." and exit 1 if a read fails.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20
#define NOBODY 65534

// word reads the first word of the file of fd.
static void word(int fd, char *buf, size_t n) {
	ssize_t got = pread(fd, buf, n - 1, 0);
	if (got < 0)
		fail("pread fd %d: %s", fd, strerror(errno));
	buf[got] = 0;
	buf[strcspn(buf, " \n")] = 0;
	if (!buf[0])
		strcpy(buf, "-");
}

int main(int argc, char **argv) {
	if (argc != 3)
		fail("usage: fileid OWN ROOT");
	int root = open(argv[2], O_RDONLY);
	if (root < 0)
		fail("open %s: %s", argv[2], strerror(errno));
	if (setgroups(0, NULL) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 || setresuid(NOBODY, NOBODY, NOBODY) != 0)
		fail("drop privileges: %s", strerror(errno));
	int own = open(argv[1], O_RDWR);
	if (own < 0)
		fail("open %s as nobody: %s", argv[1], strerror(errno));
	int proc = open("/proc/self/stat", O_RDONLY);
	if (proc < 0)
		fail("open /proc/self/stat: %s", strerror(errno));
	char link[4096];
	snprintf(link, sizeof link, "%s.link", argv[1]);
	if (symlink(argv[2], link) != 0)
		fail("symlink %s: %s", link, strerror(errno));
	int lnk = open(link, O_PATH | O_NOFOLLOW);
	if (lnk < 0)
		fail("open %s O_PATH|O_NOFOLLOW: %s", link, strerror(errno));
	printf("ready own=%d root=%d\n", own, root);
	fflush(stdout);
	for (unsigned long n = 0;; n++) {
		char a[64], b[64], c[64];
		word(own, a, sizeof a);
		word(root, b, sizeof b);
		word(proc, c, sizeof c);
		struct stat st;
		char to[4096];
		ssize_t got = readlinkat(lnk, "", to, sizeof to - 1);
		int fl = fcntl(lnk, F_GETFL);
		if (fstat(lnk, &st) != 0 || !S_ISLNK(st.st_mode) || got < 0 || fl < 0)
			fail("fd %d is no symbolic link: %s", lnk, strerror(errno));
		to[got] = 0;
		if (strcmp(to, argv[2]) != 0 || (fl & (O_PATH | O_NOFOLLOW)) != (O_PATH | O_NOFOLLOW))
			fail("fd %d links to %s with flags %#o, want %s and O_PATH|O_NOFOLLOW", lnk, to, fl, argv[2]);
		printf("tick %lu uid=%d own=%s root=%s proc=%s ok\n", n, (int)getuid(), a, b, c);
		fflush(stdout);
		struct timespec ts = {0, PERIOD_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
}
