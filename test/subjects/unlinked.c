// unlinked: a checkpoint/restore subject holding files whose names are
// gone, each part checked every tick.
//
// Usage: unlinked DIR PART...
//   DIR     an existing directory for its files
//   attr    DIR/attr, a small file with mode ATTR_MODE (set-uid, set-gid
//           and sticky) and mtime ATTR_MTIME, unlinked
//   shared  DIR/shared, opened twice (two open file descriptions: shared1
//           read-write, shared2 read-only) and mapped twice (map1 shared
//           read-write from shared1, map2 private read-only from
//           shared2), unlinked: all four must stay one inode
//   linked  DIR/linked, opened, linked as DIR/linked.link, unlinked: the
//           descriptor must stay on the inode DIR/linked.link names
//   holes   DIR/holes, unlinked, HOLES_BLOCKS blocks with data in blocks
//           1 and 3 only: the holes must stay holes
//   big     DIR/big, BIG_SIZE bytes of data, unlinked: a dump must not hold
//           it in memory (its first, middle and last blocks are checked)
//   dir     DIR/gone, a directory with mode DIR_MODE, opened, made the
//           working directory, removed: descriptor and working directory
//           must stay one deleted directory
//   symlink DIR/symlink, a symbolic link to SYMLINK_TARGET, opened itself
//           (O_PATH|O_NOFOLLOW), removed: the descriptor must stay a
//           link to it, with those flags
//   dev     DIR/null, a node of /dev/null's device made with mknod (root
//           only), opened read-write, removed: it must stay that device
//   devkmsg DIR/kmsg, the same of /dev/kmsg's, opened write-only (a dump
//           refuses it)
//   exe     its own executable, unlinked (run a copy: the binary goes):
//           the executable and the mappings of its code must stay one
//           deleted file
//
// Once set up it prints
//   ready attr=FD shared1=FD shared2=FD map1=0xADDR map2=0xADDR linked=FD holes=FD dir=FD
// (the parts asked for) then every PERIOD_MS
//   tick N pid=P ok
// or "FAIL ..." and exits 1 when a check fails.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_MS 20
#define BLOCK 4096
#define ATTR_MODE 07640
#define ATTR_MTIME 123456
#define ATTR_DATA "the contents of an unlinked file with esoteric permissions\n"
#define SHARED_SIZE (3 * BLOCK)
#define HOLES_BLOCKS 5
#define SYMLINK_TARGET "../somewhere/it/pointed"
#define BIG_SIZE (48 << 20)
#define DIR_MODE 0751

static const char *dir;
static char path_buf[4096];

static const char *path(const char *name) {
	snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
	return path_buf;
}

static void fail(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	printf("FAIL ");
	vprintf(fmt, ap);
	printf(" (errno %d)\n", errno);
	va_end(ap);
	exit(1);
}

static uint8_t pat(size_t i, uint8_t seed) { return (uint8_t)(i * 131 + seed); }

static void fill(int fd, off_t off, size_t n, uint8_t seed) {
	uint8_t b[BLOCK];
	for (size_t done = 0; done < n; done += sizeof b) {
		size_t c = n - done < sizeof b ? n - done : sizeof b;
		for (size_t i = 0; i < c; i++)
			b[i] = pat(done + i, seed);
		if (pwrite(fd, b, c, off + done) != (ssize_t)c)
			fail("write at %ld", (long)(off + done));
	}
}

static void check_fill(int fd, off_t off, size_t n, uint8_t seed, const char *what) {
	uint8_t b[BLOCK];
	for (size_t done = 0; done < n; done += sizeof b) {
		size_t c = n - done < sizeof b ? n - done : sizeof b;
		if (pread(fd, b, c, off + done) != (ssize_t)c)
			fail("%s: read at %ld", what, (long)(off + done));
		for (size_t i = 0; i < c; i++)
			if (b[i] != pat(done + i, seed))
				fail("%s: byte %ld", what, (long)(off + done + i));
	}
}

static int symlink_fd = -1;

static void check_symlink(void) {
	struct stat st;
	char to[256];
	ssize_t n = readlinkat(symlink_fd, "", to, sizeof to - 1);
	int fl = fcntl(symlink_fd, F_GETFL);
	if (fstat(symlink_fd, &st) || !S_ISLNK(st.st_mode) || n < 0 || fl < 0)
		fail("symlink: not a symbolic link");
	to[n] = 0;
	if (strcmp(to, SYMLINK_TARGET) || (fl & (O_PATH | O_NOFOLLOW)) != (O_PATH | O_NOFOLLOW))
		fail("symlink: links to %s with flags %#o", to, fl);
}

static int dev_fd = -1;
static unsigned dev_minor;

static void check_dev(void) {
	struct stat st;
	if (fstat(dev_fd, &st) || !S_ISCHR(st.st_mode) || major(st.st_rdev) != 1 || minor(st.st_rdev) != dev_minor)
		fail("dev: not device 1:%u", dev_minor);
	char c;
	if (dev_minor == 3 && (write(dev_fd, "x", 1) != 1 || read(dev_fd, &c, 1) != 0))
		fail("dev: not /dev/null's");
}

static int xopen(const char *p, int flags) {
	int fd = open(p, flags, 0600);
	if (fd < 0)
		fail("open %s", p);
	return fd;
}

static void xunlink(const char *p) {
	if (unlink(p))
		fail("unlink %s", p);
}

static int attr_fd = -1, shared1 = -1, shared2 = -1, linked_fd = -1, holes_fd = -1, dir_fd = -1, big_fd = -1;
static uint8_t *map1, *map2;
static uint8_t counter;

static void check_attr(void) {
	struct stat st;
	char b[sizeof ATTR_DATA];
	if (fstat(attr_fd, &st))
		fail("fstat attr");
	if ((st.st_mode & 07777) != ATTR_MODE || !S_ISREG(st.st_mode))
		fail("attr: mode %#o, want %#o", st.st_mode, S_IFREG | ATTR_MODE);
	if (st.st_mtime != ATTR_MTIME)
		fail("attr: mtime %ld, want %d", (long)st.st_mtime, ATTR_MTIME);
	if (st.st_nlink != 0)
		fail("attr: %ld links", (long)st.st_nlink);
	if (pread(attr_fd, b, sizeof ATTR_DATA - 1, 0) != sizeof ATTR_DATA - 1 || memcmp(b, ATTR_DATA, sizeof ATTR_DATA - 1))
		fail("attr: contents");
}

static void check_shared(void) {
	struct stat a, b;
	if (fstat(shared1, &a) || fstat(shared2, &b))
		fail("fstat shared");
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		fail("shared: the two descriptors are two files");
	if (a.st_nlink != 0 || a.st_size != SHARED_SIZE)
		fail("shared: %ld links, size %ld", (long)a.st_nlink, (long)a.st_size);
	// A write through each way in shows through every other.
	uint8_t c = ++counter, got;
	if (pwrite(shared1, &c, 1, 100) != 1)
		fail("shared: write");
	if (map1[100] != c || map2[100] != c || pread(shared2, &got, 1, 100) != 1 || got != c)
		fail("shared: a write through shared1 does not show everywhere");
	map1[BLOCK + 7] = c;
	if (pread(shared2, &got, 1, BLOCK + 7) != 1 || got != c || map2[BLOCK + 7] != c)
		fail("shared: a write through map1 does not show everywhere");
	check_fill(shared2, 2 * BLOCK, BLOCK, 2, "shared");
}

static void check_linked(void) {
	struct stat a, b;
	if (fstat(linked_fd, &a) || stat(path("linked.link"), &b))
		fail("stat linked");
	// (A dump with --leave-running adds a link while the images wait.)
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		fail("linked: the descriptor is not on linked.link's inode");
	if (access(path("linked"), F_OK) == 0 || errno != ENOENT)
		fail("linked: the unlinked name is back");
	uint8_t c = ++counter, got;
	if (pwrite(linked_fd, &c, 1, 10) != 1)
		fail("linked: write");
	int fd = xopen(path("linked.link"), O_RDONLY);
	if (pread(fd, &got, 1, 10) != 1 || got != c)
		fail("linked: a write through the descriptor does not show through the link");
	close(fd);
}

static void check_big(void) {
	struct stat st;
	if (fstat(big_fd, &st) || st.st_size != BIG_SIZE || st.st_nlink != 0)
		fail("big: size %ld, %ld links", (long)st.st_size, (long)st.st_nlink);
	off_t offs[] = {0, BIG_SIZE / 2, BIG_SIZE - BLOCK};
	for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
		check_fill(big_fd, offs[i], BLOCK, 77, "big");
}

static void check_holes(void) {
	struct stat st;
	if (fstat(holes_fd, &st) || st.st_size != HOLES_BLOCKS * BLOCK || st.st_nlink != 0)
		fail("holes: size %ld, %ld links", (long)st.st_size, (long)st.st_nlink);
	static const struct {
		off_t from;
		int whence;
		off_t want;
	} seeks[] = {
		{0, SEEK_DATA, BLOCK},         {BLOCK, SEEK_HOLE, 2 * BLOCK},     {2 * BLOCK, SEEK_DATA, 3 * BLOCK},
		{3 * BLOCK, SEEK_HOLE, 4 * BLOCK}, {0, SEEK_HOLE, 0},
	};
	for (size_t i = 0; i < sizeof seeks / sizeof seeks[0]; i++) {
		off_t got = lseek(holes_fd, seeks[i].from, seeks[i].whence);
		if (got != seeks[i].want)
			fail("holes: seek %s from %ld: %ld, want %ld", seeks[i].whence == SEEK_DATA ? "data" : "hole",
			     (long)seeks[i].from, (long)got, (long)seeks[i].want);
	}
	if (lseek(holes_fd, 4 * BLOCK, SEEK_DATA) != -1 || errno != ENXIO)
		fail("holes: data in the tail hole");
	check_fill(holes_fd, BLOCK, BLOCK, 11, "holes");
	check_fill(holes_fd, 3 * BLOCK, BLOCK, 33, "holes");
}

static int exe_deleted;

static void check_exe(void) {
	struct stat st;
	char link[4096], line[4096];
	ssize_t n = readlink("/proc/self/exe", link, sizeof link - 1);
	if (n < 0 || stat("/proc/self/exe", &st))
		fail("exe");
	link[n] = 0;
	if (n < 10 || strcmp(link + n - 10, " (deleted)") || st.st_nlink != 0)
		fail("exe: %s with %ld links, want it deleted", link, (long)st.st_nlink);
	// The first mapping is of the executable's headers.
	FILE *f = fopen("/proc/self/maps", "r");
	unsigned long ino = 0;
	if (!f || !fgets(line, sizeof line, f) || sscanf(line, "%*s %*s %*s %*s %lu", &ino) != 1)
		fail("exe: read maps");
	fclose(f);
	if (ino != st.st_ino)
		fail("exe: the code mapped is inode %lu, the executable %lu", ino, (unsigned long)st.st_ino);
}

static void check_dir(void) {
	struct stat a, b;
	if (fstat(dir_fd, &a) || stat(".", &b))
		fail("stat dir");
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		fail("dir: the descriptor and the working directory are two directories");
	if (!S_ISDIR(a.st_mode) || (a.st_mode & 07777) != DIR_MODE || a.st_nlink != 0)
		fail("dir: mode %#o, %ld links", a.st_mode, (long)a.st_nlink);
	if (openat(dir_fd, "new", O_WRONLY | O_CREAT, 0600) >= 0 || errno != ENOENT)
		fail("dir: a file could be made in the removed directory");
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: unlinked DIR PART...\n");
		return 2;
	}
	dir = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0);
	char ready[1024] = "ready";
	size_t rl = strlen(ready);
	for (int i = 2; i < argc; i++) {
		const char *part = argv[i];
		if (!strcmp(part, "attr")) {
			attr_fd = xopen(path("attr"), O_RDWR | O_CREAT | O_EXCL);
			if (write(attr_fd, ATTR_DATA, sizeof ATTR_DATA - 1) != sizeof ATTR_DATA - 1)
				fail("write attr");
			struct timespec ts[2] = {{ATTR_MTIME, 0}, {ATTR_MTIME, 0}};
			if (futimens(attr_fd, ts) || fchmod(attr_fd, ATTR_MODE))
				fail("attr: times or mode");
			xunlink(path("attr"));
			rl += snprintf(ready + rl, sizeof ready - rl, " attr=%d", attr_fd);
		} else if (!strcmp(part, "shared")) {
			shared1 = xopen(path("shared"), O_RDWR | O_CREAT | O_EXCL);
			fill(shared1, 0, SHARED_SIZE, 2);
			shared2 = xopen(path("shared"), O_RDONLY);
			map1 = mmap(NULL, SHARED_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, shared1, 0);
			map2 = mmap(NULL, SHARED_SIZE, PROT_READ, MAP_PRIVATE, shared2, 0);
			if (map1 == MAP_FAILED || map2 == MAP_FAILED)
				fail("mmap shared");
			xunlink(path("shared"));
			rl += snprintf(ready + rl, sizeof ready - rl, " shared1=%d shared2=%d map1=%p map2=%p", shared1, shared2,
				       (void *)map1, (void *)map2);
		} else if (!strcmp(part, "linked")) {
			linked_fd = xopen(path("linked"), O_RDWR | O_CREAT | O_EXCL);
			fill(linked_fd, 0, 64, 7);
			char link_path[4096];
			snprintf(link_path, sizeof link_path, "%s", path("linked.link"));
			if (link(path("linked"), link_path))
				fail("link");
			xunlink(path("linked"));
			rl += snprintf(ready + rl, sizeof ready - rl, " linked=%d", linked_fd);
		} else if (!strcmp(part, "holes")) {
			holes_fd = xopen(path("holes"), O_RDWR | O_CREAT | O_EXCL);
			xunlink(path("holes"));
			fill(holes_fd, BLOCK, BLOCK, 11);
			fill(holes_fd, 3 * BLOCK, BLOCK, 33);
			if (ftruncate(holes_fd, HOLES_BLOCKS * BLOCK))
				fail("truncate holes");
			rl += snprintf(ready + rl, sizeof ready - rl, " holes=%d", holes_fd);
		} else if (!strcmp(part, "big")) {
			big_fd = xopen(path("big"), O_RDWR | O_CREAT | O_EXCL);
			xunlink(path("big"));
			fill(big_fd, 0, BIG_SIZE, 77);
			rl += snprintf(ready + rl, sizeof ready - rl, " big=%d", big_fd);
		} else if (!strcmp(part, "dir")) {
			if (mkdir(path("gone"), DIR_MODE) || chmod(path("gone"), DIR_MODE))
				fail("mkdir");
			dir_fd = xopen(path("gone"), O_RDONLY | O_DIRECTORY);
			if (chdir(path("gone")) || rmdir(path("gone")))
				fail("chdir or rmdir");
			rl += snprintf(ready + rl, sizeof ready - rl, " dir=%d", dir_fd);
		} else if (!strcmp(part, "symlink")) {
			if (symlink(SYMLINK_TARGET, path("symlink")))
				fail("symlink");
			symlink_fd = xopen(path("symlink"), O_PATH | O_NOFOLLOW);
			xunlink(path("symlink"));
			rl += snprintf(ready + rl, sizeof ready - rl, " symlink=%d", symlink_fd);
		} else if (!strcmp(part, "dev") || !strcmp(part, "devkmsg")) {
			int null = !strcmp(part, "dev");
			const char *p = path(null ? "null" : "kmsg");
			dev_minor = null ? 3 : 11;
			if (mknod(p, S_IFCHR | 0600, makedev(1, dev_minor)))
				fail("mknod %s", p);
			dev_fd = xopen(p, null ? O_RDWR : O_WRONLY);
			xunlink(p);
			rl += snprintf(ready + rl, sizeof ready - rl, " %s=%d", part, dev_fd);
		} else if (!strcmp(part, "exe")) {
			char self[4096];
			ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
			if (n < 0)
				fail("readlink exe");
			self[n] = 0;
			xunlink(self);
			exe_deleted = 1;
		} else {
			fail("unknown part %s", part);
		}
	}
	printf("%s pid=%d\n", ready, getpid());
	for (unsigned long tick = 0;; tick++) {
		if (attr_fd >= 0)
			check_attr();
		if (shared1 >= 0)
			check_shared();
		if (linked_fd >= 0)
			check_linked();
		if (holes_fd >= 0)
			check_holes();
		if (dir_fd >= 0)
			check_dir();
		if (big_fd >= 0)
			check_big();
		if (symlink_fd >= 0)
			check_symlink();
		if (dev_fd >= 0)
			check_dev();
		if (exe_deleted)
			check_exe();
		printf("tick %lu pid=%d ok\n", tick, getpid());
		struct timespec d = {0, PERIOD_MS * 1000000L};
		nanosleep(&d, NULL);
	}
}
