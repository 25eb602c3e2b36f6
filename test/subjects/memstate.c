// memstate: a subject holding the memory and process state of its
// arguments, DIR then one or more of:
//   lock        a MAP_LOCKED mapping, and a mapping half locked with mlock
//   lockall     mlockall(MCL_FUTURE)
//   lockonfault a mapping locked with mlock2(MLOCK_ONFAULT)
//   seal        a mapping sealed with mseal (Linux 6.10)
//   hugetlb     a private mapping of a 2 MiB huge page, written whole
//               (MAP_HUGETLB: needs one reserved, vm.nr_hugepages)
//   hugeshared  a shared one of two huge pages (MAP_SHARED | MAP_ANONYMOUS
//               | MAP_HUGETLB), the second made read-only: two VMAs of one
//               object
//   hugememfd   a shared mapping of a memfd of huge pages (MFD_HUGETLB)
//   guard       guard regions (MADV_GUARD_INSTALL) inside a mapping
//   shmsplit    shared anonymous memory split in three VMAs by mprotect,
//               its first page mapped a second time (mremap of old size
//               0), and another object whose first page was unmapped
//   fileprot    a shared read-only mapping of a file opened read-write,
//               and one of a file opened read-only
//   oom         oom_score_adj 400
//   reserve     an 8 TiB inaccessible reservation, more than the commit
//               limit lets a writable mapping have, with a writable part
//               holding data; a 1 TiB sparse MAP_NORESERVE mapping with
//               data in three pages far apart; and an inaccessible
//               mapping holding data
//   membarrier  every membarrier registration the kernel offers
//   runsplit    4 MiB written whole, whose middle MiB, mapped again with
//               MAP_NORESERVE, is a VMA of its own: one run of pages
//               across three VMAs, their bounds not on a MiB
// It prints "ready key=value...", then every 20 ms checks its state from
// inside and prints "tick N ... ok", or "FAIL ..." and exits.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define MADV_GUARD_INSTALL_ 102
#define MLOCK_ONFAULT_ 1
#define MEMBARRIER_CMD_QUERY_ 0
#define MEMBARRIER_CMD_GET_REGISTRATIONS_ (1 << 9)

#define HUGE_PAGES 512 // a 2 MiB huge page
static char *huge;
static size_t huge_pages = HUGE_PAGES;
static char *locked, *halflocked, *onfault, *guarded, *shsplit, *shdup, *shtail, *rwmap, *romap;
static char *reserved, *sparse, *hidden, *runsplit;
static int oom, barriers;

#define RUNSPLIT_PAGES 1024
#define RUNSPLIT_MID (384 * PAGE)

// Pages of the reservation and of the sparse mapping that hold data.
#define RESERVED_SIZE (8UL << 40)
#define RESERVED_PART (3UL << 40)
#define SPARSE_SIZE (1UL << 40)
static const size_t sparse_pages[] = {0, 123456789, (SPARSE_SIZE / PAGE) - 1};
static char line[4096];
static size_t used;

#define READY(...) (used += snprintf(line + used, sizeof(line) - used, __VA_ARGS__))

static void fail(const char *what) {
	printf("FAIL %s (errno %d %s)\n", what, errno, strerror(errno));
	exit(1);
}

static char pattern(size_t i) { return (char)(i * 131 + 7); }

static char *mapped(size_t pages, int prot, int flags, int fd) {
	char *p = mmap(NULL, pages * PAGE, prot, flags, fd, 0);
	if (p == MAP_FAILED)
		fail("mmap");
	return p;
}

static void fill(char *p, size_t pages) {
	for (size_t i = 0; i < pages * PAGE; i++)
		p[i] = pattern(i);
}

static void check(const char *what, char *p, size_t from, size_t to) {
	for (size_t i = from * PAGE; i < to * PAGE; i += 61)
		if (p[i] != pattern(i)) {
			printf("FAIL %s pattern at byte %zu\n", what, i);
			exit(1);
		}
}

static sigjmp_buf jump;
static volatile sig_atomic_t jumping;

static void on_segv(int sig) {
	(void)sig;
	if (jumping)
		siglongjmp(jump, 1);
	_exit(2);
}

// faults reports whether reading *p faults.
static int faults(volatile char *p) {
	jumping = 1;
	int faulted = sigsetjmp(jump, 1);
	if (!faulted)
		(void)*p;
	jumping = 0;
	return faulted;
}

static long membarrier(int cmd) { return syscall(__NR_membarrier, cmd, 0, 0); }

static void setup(const char *dir, const char *mode) {
	char path[4096];
	if (!strcmp(mode, "lock")) {
		locked = mapped(4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1);
		fill(locked, 4);
		halflocked = mapped(4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
		fill(halflocked, 4);
		if (mlock(halflocked + 2 * PAGE, 2 * PAGE))
			fail("mlock");
		READY(" locked=%p halflocked=%p", (void *)locked, (void *)halflocked);
	} else if (!strcmp(mode, "lockall")) {
		if (mlockall(MCL_FUTURE))
			fail("mlockall");
	} else if (!strcmp(mode, "lockonfault")) {
		onfault = mapped(4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
		if (syscall(SYS_mlock2, onfault, 4 * PAGE, MLOCK_ONFAULT_))
			fail("mlock2");
		READY(" onfault=%p", (void *)onfault);
	} else if (!strcmp(mode, "seal")) {
		char *sealed = mapped(2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
		if (syscall(462 /* mseal */, sealed, 2 * PAGE, 0))
			fail("mseal");
		READY(" sealed=%p", (void *)sealed);
	} else if (!strcmp(mode, "hugetlb")) {
		huge = mapped(huge_pages, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1);
		fill(huge, huge_pages);
		READY(" huge=%p", (void *)huge);
	} else if (!strcmp(mode, "hugeshared")) {
		huge_pages = 2 * HUGE_PAGES;
		huge = mapped(huge_pages, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1);
		fill(huge, huge_pages);
		if (mprotect(huge + HUGE_PAGES * PAGE, HUGE_PAGES * PAGE, PROT_READ))
			fail("mprotect hugeshared");
		READY(" huge=%p", (void *)huge);
	} else if (!strcmp(mode, "hugememfd")) {
		int fd = memfd_create("huge", MFD_HUGETLB);
		if (fd < 0 || ftruncate(fd, HUGE_PAGES * PAGE))
			fail("memfd_create MFD_HUGETLB");
		huge = mapped(huge_pages, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		fill(huge, huge_pages);
		READY(" huge=%p", (void *)huge);
	} else if (!strcmp(mode, "guard")) {
		// Pages 2-3 and 6 are guards; the others hold the pattern.
		guarded = mapped(8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
		fill(guarded, 8);
		if (madvise(guarded + 2 * PAGE, 2 * PAGE, MADV_GUARD_INSTALL_) || madvise(guarded + 6 * PAGE, PAGE, MADV_GUARD_INSTALL_))
			fail("madvise(MADV_GUARD_INSTALL)");
		READY(" guarded=%p", (void *)guarded);
	} else if (!strcmp(mode, "shmsplit")) {
		// One object, three VMAs: rw, r (page 1), rw.
		shsplit = mapped(3, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1);
		fill(shsplit, 3);
		if (mprotect(shsplit + PAGE, PAGE, PROT_READ))
			fail("mprotect");
		shdup = mremap(shsplit, 0, PAGE, MREMAP_MAYMOVE);
		if (shdup == MAP_FAILED)
			fail("mremap");
		// One VMA at offset one page of its object.
		shtail = mapped(3, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1);
		fill(shtail, 3);
		if (munmap(shtail, PAGE))
			fail("munmap");
		shtail += PAGE;
		READY(" shsplit=%p shdup=%p shtail=%p", (void *)shsplit, (void *)shdup, (void *)shtail);
	} else if (!strcmp(mode, "fileprot")) {
		snprintf(path, sizeof(path), "%s/rw.dat", dir);
		int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || ftruncate(fd, PAGE))
			fail("create rw.dat");
		rwmap = mapped(1, PROT_READ, MAP_SHARED, fd);
		close(fd);
		snprintf(path, sizeof(path), "%s/ro.dat", dir);
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || ftruncate(fd, PAGE))
			fail("create ro.dat");
		close(fd);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			fail("open ro.dat");
		romap = mapped(1, PROT_READ, MAP_SHARED, fd);
		close(fd);
		READY(" rwmap=%p romap=%p", (void *)rwmap, (void *)romap);
	} else if (!strcmp(mode, "reserve")) {
		reserved = mapped(RESERVED_SIZE / PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
		if (mprotect(reserved + RESERVED_PART, 4 * PAGE, PROT_READ | PROT_WRITE))
			fail("mprotect reserved");
		fill(reserved + RESERVED_PART, 4);
		sparse = mapped(SPARSE_SIZE / PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1);
		for (size_t i = 0; i < sizeof(sparse_pages) / sizeof(sparse_pages[0]); i++)
			fill(sparse + sparse_pages[i] * PAGE, 1);
		hidden = mapped(2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
		fill(hidden, 2);
		if (mprotect(hidden, 2 * PAGE, PROT_NONE))
			fail("mprotect hidden");
		READY(" reserved=%p sparse=%p hidden=%p", (void *)reserved, (void *)sparse, (void *)hidden);
	} else if (!strcmp(mode, "runsplit")) {
		runsplit = mapped(RUNSPLIT_PAGES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
		if (mmap(runsplit + RUNSPLIT_MID, 256 * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED)
			fail("mmap the middle of runsplit");
		fill(runsplit, RUNSPLIT_PAGES);
		READY(" runsplit=%p", (void *)runsplit);
	} else if (!strcmp(mode, "oom")) {
		snprintf(path, sizeof(path), "/proc/self/oom_score_adj");
		int fd = open(path, O_WRONLY);
		if (fd < 0 || write(fd, "400", 3) != 3)
			fail("write oom_score_adj");
		close(fd);
		oom = 400;
	} else if (!strcmp(mode, "membarrier")) {
		long supported = membarrier(MEMBARRIER_CMD_QUERY_);
		if (supported < 0)
			fail("membarrier query");
		// The registration commands are the odd bits from 2 on.
		for (int cmd = 1 << 2; cmd <= 1 << 8; cmd <<= 2)
			if (supported & cmd) {
				if (membarrier(cmd))
					fail("membarrier register");
				barriers |= cmd;
			}
		READY(" barriers=%d", barriers);
	} else {
		printf("FAIL unknown mode %s\n", mode);
		exit(1);
	}
}

static void check_all(unsigned long tick) {
	if (huge)
		check("huge", huge, 0, huge_pages);
	if (runsplit)
		check("runsplit", runsplit, 0, RUNSPLIT_PAGES);
	if (reserved) {
		check("reserved", reserved + RESERVED_PART, 0, 4);
		for (size_t i = 0; i < sizeof(sparse_pages) / sizeof(sparse_pages[0]); i++)
			check("sparse", sparse + sparse_pages[i] * PAGE, 0, 1);
		if (!faults(reserved) || !faults(hidden)) {
			printf("FAIL an inaccessible page reads\n");
			exit(1);
		}
		// Read through /proc/self/mem, which reads what is mapped
		// inaccessible, so that its VMA stays as it is.
		static char copy[2 * PAGE];
		int fd = open("/proc/self/mem", O_RDONLY);
		if (fd < 0 || pread(fd, copy, sizeof(copy), (off_t)(uintptr_t)hidden) != sizeof(copy))
			fail("read hidden");
		close(fd);
		check("hidden", copy, 0, 2);
	}
	if (locked) {
		check("locked", locked, 0, 4);
		check("halflocked", halflocked, 0, 4);
	}
	if (guarded) {
		check("guarded", guarded, 0, 2);
		check("guarded", guarded, 4, 6);
		check("guarded", guarded, 7, 8);
		int pages[] = {2, 3, 6};
		for (int i = 0; i < 3; i++)
			if (!faults(guarded + pages[i] * PAGE)) {
				printf("FAIL guard page %d reads\n", pages[i]);
				exit(1);
			}
	}
	if (shsplit) {
		check("shsplit", shsplit, 0, 3);
		check("shtail", shtail - PAGE, 1, 3);
		// Writes land in the object (the pattern is kept), and show
		// through its other mapping (byte 4095 is not one check reads).
		shsplit[2 * PAGE + tick % PAGE] = pattern(2 * PAGE + tick % PAGE);
		shsplit[PAGE - 1] = (char)tick;
		if (shdup[PAGE - 1] != (char)tick) {
			printf("FAIL the second mapping of the object does not show a write\n");
			exit(1);
		}
	}
	if (rwmap) {
		// The mapping of the read-write file may become writable, the
		// other may not.
		if (mprotect(rwmap, PAGE, PROT_READ | PROT_WRITE))
			fail("mprotect rw.dat mapping writable");
		rwmap[0] = (char)tick;
		if (mprotect(rwmap, PAGE, PROT_READ))
			fail("mprotect rw.dat mapping back");
		if (mprotect(romap, PAGE, PROT_READ | PROT_WRITE) == 0 || errno != EACCES)
			fail("mprotect ro.dat mapping writable did not fail with EACCES");
	}
	if (oom) {
		char b[32] = {0};
		int fd = open("/proc/self/oom_score_adj", O_RDONLY);
		if (fd < 0 || read(fd, b, sizeof(b) - 1) <= 0)
			fail("read oom_score_adj");
		close(fd);
		if (atoi(b) != oom) {
			printf("FAIL oom_score_adj %s", b);
			exit(1);
		}
	}
	if (barriers) {
		// Each registered command runs (EPERM when not registered).
		for (int cmd = 1 << 2; cmd <= 1 << 8; cmd <<= 2)
			if ((barriers & cmd) && membarrier(cmd >> 1))
				fail("membarrier");
		long got = membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS_);
		if (got >= 0 && got != barriers) {
			printf("FAIL membarrier registrations %#lx, want %#x\n", got, barriers);
			exit(1);
		}
	}
}

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: memstate DIR MODE...\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGSEGV, on_segv);
	for (int i = 2; i < argc; i++)
		setup(argv[1], argv[i]);
	check_all(0);
	printf("ready%s\n", line);
	for (unsigned long tick = 0;; tick++) {
		check_all(tick);
		struct timespec m;
		clock_gettime(CLOCK_MONOTONIC, &m);
		printf("tick %lu mono_ns=%lld pid=%d ok\n", tick, m.tv_sec * 1000000000LL + m.tv_nsec, getpid());
		struct timespec d = {0, 20 * 1000000L};
		nanosleep(&d, NULL);
	}
}
