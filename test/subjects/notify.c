// notify: a checkpoint/restore subject holding an inotify, and a fanotify
// if asked, which prints every event they report.
//
// Usage: notify DIR [deleted] [fanotify [mount|fs|nocap]] [proc] [noread] [fdinfo] [async] [dnotify]
//   DIR       an existing directory; the inotify watches it (IN_CREATE,
//             IN_DELETE: watch 1), DIR/gone (watch 2, removed: the
//             numbers have a gap) and DIR/watched (IN_MODIFY: watch 3)
//   deleted   also DIR/deleted, held open read-write as held, watched
//             (IN_MODIFY: watch 4), then unlinked
//   fanotify  a fanotify marking DIR/watched for FAN_MODIFY
//   mount     the fanotify also marks the mount of DIR for FAN_MODIFY,
//             FAN_ACCESS ignored (surviving modification)
//   fs        the fanotify also marks the filesystem of DIR
//   nocap     then drops CAP_SYS_ADMIN from its effective set
//   proc      the inotify also watches /proc/self/status (watch 4, 5
//             with deleted): a file no path reaches through its handle
//   noread    events are left in the queues, not read
//   async     the inotify is O_ASYNC (signal-driven I/O)
//   fdinfo    it holds /proc/self/fdinfo/INO open, and checks every tick
//             that it shows watch 1
//   dnotify   it also holds DIR open with a dnotify registration
//             (F_NOTIFY, DN_CREATE), SIGIO ignored
//
// Once set up, the events of the set-up read, it prints
//   ready ino=FD fan=FD held=FD dn=FD
// then every PERIOD_MS, first each event read since the last tick,
//   event wd=W mask=0xM name=NAME
//   fanevent mask=0xM ino=INODE
// then
//   tick N pid=P ok
// or "FAIL ..." and exits 1 when a call fails.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <linux/capability.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20

static const char *dir;
static char path_buf[PATH_MAX];

static const char *path(const char *name) {
	snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
	return path_buf;
}

static int watch(int ino, const char *name, uint32_t mask, int want) {
	int wd = inotify_add_watch(ino, name[0] ? path(name) : dir, mask);
	if (wd != want)
		fail("inotify_add_watch %s: %d (%s), want %d", name, wd, strerror(errno), want);
	return wd;
}

static void create(const char *name) {
	int fd = open(path(name), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
	if (fd < 0)
		fail("create %s: %s", name, strerror(errno));
	close(fd);
}

// drain reads the inotify's events; with print, it prints them.
static void drain(int ino, int print) {
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		ssize_t n = read(ino, buf, sizeof buf);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0)
			fail("read inotify: %s", strerror(errno));
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			if (print)
				printf("event wd=%d mask=%#x name=%s\n", ev->wd, ev->mask, ev->len ? ev->name : "-");
			p += sizeof *ev + ev->len;
		}
	}
}

static void drain_fan(int fan) {
	char buf[4096] __attribute__((aligned(__alignof__(struct fanotify_event_metadata))));
	for (;;) {
		ssize_t n = read(fan, buf, sizeof buf);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0)
			fail("read fanotify: %s", strerror(errno));
		struct fanotify_event_metadata *ev = (struct fanotify_event_metadata *)buf;
		for (; FAN_EVENT_OK(ev, n); ev = FAN_EVENT_NEXT(ev, n)) {
			struct stat st = {0};
			if (ev->fd >= 0) {
				fstat(ev->fd, &st);
				close(ev->fd);
			}
			printf("fanevent mask=%#llx ino=%lu\n", (unsigned long long)ev->mask, (unsigned long)st.st_ino);
		}
	}
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		fail("usage: notify DIR [deleted] [fanotify]");
	dir = argv[1];
	int deleted = 0, fanotify = 0, mount = 0, fs = 0, nocap = 0, procfs = 0, noread = 0, fdinfo = 0, async = 0, dnotify = 0;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "deleted") == 0)
			deleted = 1;
		else if (strcmp(argv[i], "fanotify") == 0)
			fanotify = 1;
		else if (strcmp(argv[i], "mount") == 0)
			mount = 1;
		else if (strcmp(argv[i], "fs") == 0)
			fs = 1;
		else if (strcmp(argv[i], "nocap") == 0)
			nocap = 1;
		else if (strcmp(argv[i], "proc") == 0)
			procfs = 1;
		else if (strcmp(argv[i], "noread") == 0)
			noread = 1;
		else if (strcmp(argv[i], "fdinfo") == 0)
			fdinfo = 1;
		else if (strcmp(argv[i], "async") == 0)
			async = 1;
		else if (strcmp(argv[i], "dnotify") == 0)
			dnotify = 1;
		else
			fail("unknown part %s", argv[i]);
	}
	create("gone");
	create("watched");
	int ino = inotify_init1(IN_NONBLOCK);
	if (ino < 0)
		fail("inotify_init1: %s", strerror(errno));
	watch(ino, "", IN_CREATE | IN_DELETE, 1);
	int gone = watch(ino, "gone", IN_ATTRIB, 2);
	watch(ino, "watched", IN_MODIFY, 3);
	if (inotify_rm_watch(ino, gone) != 0)
		fail("inotify_rm_watch: %s", strerror(errno));
	int held = -1;
	if (deleted) {
		held = open(path("deleted"), O_CREAT | O_RDWR, 0644);
		if (held < 0)
			fail("create deleted: %s", strerror(errno));
		watch(ino, "deleted", IN_MODIFY, 4);
		if (unlink(path("deleted")) != 0)
			fail("unlink deleted: %s", strerror(errno));
	}
	int fan = -1;
	if (fanotify) {
		fan = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY | O_LARGEFILE);
		if (fan < 0)
			fail("fanotify_init: %s", strerror(errno));
		if (fanotify_mark(fan, FAN_MARK_ADD, FAN_MODIFY, AT_FDCWD, path("watched")) != 0)
			fail("fanotify_mark: %s", strerror(errno));
		if (mount && fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_MODIFY, AT_FDCWD, dir) != 0)
			fail("fanotify_mark mount: %s", strerror(errno));
		if (mount && fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_MOUNT | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY,
					  FAN_ACCESS, AT_FDCWD, dir) != 0)
			fail("fanotify_mark mount ignored: %s", strerror(errno));
		if (fs && fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN, AT_FDCWD, dir) != 0)
			fail("fanotify_mark filesystem: %s", strerror(errno));
		if (nocap) {
			struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
			struct __user_cap_data_struct d[2];
			if (syscall(SYS_capget, &h, d) != 0)
				fail("capget: %s", strerror(errno));
			d[0].effective &= ~(1u << CAP_SYS_ADMIN);
			if (syscall(SYS_capset, &h, d) != 0)
				fail("capset: %s", strerror(errno));
		}
	}
	if (procfs && inotify_add_watch(ino, "/proc/self/status", IN_MODIFY) < 0)
		fail("inotify_add_watch /proc/self/status: %s", strerror(errno));
	if (async && fcntl(ino, F_SETFL, O_NONBLOCK | O_ASYNC) != 0)
		fail("fcntl O_ASYNC: %s", strerror(errno));
	int info = -1;
	if (fdinfo) {
		char p[64];
		snprintf(p, sizeof p, "/proc/self/fdinfo/%d", ino);
		if ((info = open(p, O_RDONLY)) < 0)
			fail("open %s: %s", p, strerror(errno));
	}
	int dn = -1;
	if (dnotify) {
		signal(SIGIO, SIG_IGN);
		if ((dn = open(dir, O_RDONLY | O_DIRECTORY)) < 0)
			fail("open %s: %s", dir, strerror(errno));
		if (fcntl(dn, F_NOTIFY, DN_CREATE | DN_MULTISHOT) != 0)
			fail("fcntl F_NOTIFY: %s", strerror(errno));
	}
	drain(ino, 0);
	printf("ready ino=%d fan=%d held=%d dn=%d\n", ino, fan, held, dn);
	for (unsigned long n = 0;; n++) {
		if (!noread)
			drain(ino, 1);
		if (fan >= 0 && !noread)
			drain_fan(fan);
		if (info >= 0) {
			char buf[4096];
			ssize_t len = pread(info, buf, sizeof buf - 1, 0);
			if (len < 0)
				fail("read fdinfo: %s", strerror(errno));
			buf[len] = 0;
			if (!strstr(buf, "inotify wd:1 "))
				fail("fdinfo of the inotify shows no watch 1: %s", buf);
		}
		printf("tick %lu pid=%d ok\n", n, getpid());
		struct timespec ts = {0, PERIOD_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
}
