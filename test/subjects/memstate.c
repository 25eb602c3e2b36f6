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
//   aio         three native AIO contexts (io_setup) writing to and
//               reading from DIR/aio.dat: the first's ring gone round
//               once, holding one completed event not reaped whose slot
//               is past the end (its tail before its head), the second's
//               (a ring of four pages) two; every tick checks they are
//               there, reading the rings as libaio does, and makes a
//               round trip through the third. Once DIR/aio.reap exists
//               it reaps them with io_getevents, prints "aio reaped 3",
//               and from then on makes a round trip through every context
//               each tick
//   aiopoll     an AIO context with a request in flight: a poll of a
//               pipe that nothing writes; "aiopipe" is its write end
// It prints "ready key=value...", then every 20 ms checks its state from
// inside and prints "tick N ... ok", or "FAIL ..." and exits.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <poll.h>
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

// aio_ring is the header of an AIO context's ring (struct aio_ring of the
// kernel's fs/aio.c), which libaio reads to reap without a system call.
struct aio_ring {
	unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
	struct io_event events[];
};

#define AIO_CONTEXTS 3
static aio_context_t aio_ctx[AIO_CONTEXTS];
// aio_pending are the tags of the completed events each context holds
// unreaped, until DIR/aio.reap exists.
static const uint64_t aio_pending[AIO_CONTEXTS][2] = {{0xa0}, {0xa1, 0xa2}, {0}};
static const int aio_npending[AIO_CONTEXTS] = {1, 2, 0};
static int aio_fd = -1, aio_reaped;
static char aio_trigger[4096];
// The iocbs and buffers of the pending writes stay as they were
// submitted.
static struct iocb aio_cbs[AIO_CONTEXTS][2];
static uint64_t aio_bufs[AIO_CONTEXTS][2];

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

static struct aio_ring *ring_of(int i) { return (struct aio_ring *)aio_ctx[i]; }

// aio_submit submits an iocb of context i: a write or read of the 8 bytes
// at buf, at offset off of DIR/aio.dat, tagged tag.
static void aio_submit(int i, struct iocb *cb, int opcode, uint64_t *buf, off_t off, uint64_t tag) {
	memset(cb, 0, sizeof(*cb));
	cb->aio_fildes = aio_fd;
	cb->aio_lio_opcode = opcode;
	cb->aio_buf = (uint64_t)(uintptr_t)buf;
	cb->aio_nbytes = sizeof(*buf);
	cb->aio_offset = off;
	cb->aio_data = tag;
	if (syscall(SYS_io_submit, aio_ctx[i], 1, &cb) != 1)
		fail("io_submit");
}

// aio_reap reaps n events of context i, which must be tagged tags, in
// order, and done with 8 bytes.
static void aio_reap(int i, const uint64_t *tags, int n) {
	struct io_event ev[2];
	struct timespec limit = {5, 0};
	long got = syscall(SYS_io_getevents, aio_ctx[i], n, n, ev, &limit);
	if (got != n)
		fail("io_getevents");
	for (int k = 0; k < n; k++)
		if (ev[k].data != tags[k] || ev[k].res != 8) {
			printf("FAIL AIO context %d: event %d tagged %#llx res %lld, want %#llx res 8\n", i, k,
			       (unsigned long long)ev[k].data, (long long)ev[k].res, (unsigned long long)tags[k]);
			exit(1);
		}
}

// aio_round_trip writes tick through context i, and reads it back.
static void aio_round_trip(int i, unsigned long tick) {
	struct iocb cb;
	uint64_t out = tick * 16 + (uint64_t)i, in = 0, tag = tick << 8 | (uint64_t)i << 4;
	aio_submit(i, &cb, IOCB_CMD_PWRITE, &out, 64 * (i + 1), tag | 1);
	aio_reap(i, (uint64_t[]){tag | 1}, 1);
	aio_submit(i, &cb, IOCB_CMD_PREAD, &in, 64 * (i + 1), tag | 2);
	aio_reap(i, (uint64_t[]){tag | 2}, 1);
	if (in != out) {
		printf("FAIL AIO context %d read %#llx back, wrote %#llx\n", i, (unsigned long long)in, (unsigned long long)out);
		exit(1);
	}
}

// aio_check_pending checks, as libaio reads a ring, that context i holds
// its pending events, and no other.
static void aio_check_pending(int i) {
	struct aio_ring *r = ring_of(i);
	if (r->magic != 0xa10a10a1 || (r->tail + r->nr - r->head) % r->nr != (unsigned)aio_npending[i]) {
		printf("FAIL AIO context %d: ring magic %#x head %u tail %u of %u, want %d events\n", i, r->magic, r->head, r->tail, r->nr, aio_npending[i]);
		exit(1);
	}
	for (int k = 0; k < aio_npending[i]; k++) {
		struct io_event *e = &r->events[(r->head + k) % r->nr];
		if (e->data != aio_pending[i][k] || e->res != 8 || e->obj != (uint64_t)(uintptr_t)&aio_cbs[i][k]) {
			printf("FAIL AIO context %d: pending event %d tagged %#llx\n", i, k, (unsigned long long)e->data);
			exit(1);
		}
	}
}

static void aio_setup(const char *dir) {
	char path[4096];
	snprintf(path, sizeof(path), "%s/aio.dat", dir);
	if ((aio_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)) < 0)
		fail("create aio.dat");
	snprintf(aio_trigger, sizeof(aio_trigger), "%s/aio.reap", dir);
	// Rings of one page (nr_events 1 or 4 are raised to four per CPU),
	// and of four.
	const unsigned events[AIO_CONTEXTS] = {1, 200, 4};
	for (int i = 0; i < AIO_CONTEXTS; i++)
		if (syscall(SYS_io_setup, events[i], &aio_ctx[i]))
			fail("io_setup");
	// The first ring goes round to its last slot (a round trip is two
	// events, and the ring's count is odd), the second a few.
	for (unsigned k = 0; k < (ring_of(0)->nr - 1) / 2; k++)
		aio_round_trip(0, k);
	for (unsigned k = 0; k < 5; k++)
		aio_round_trip(1, k);
	for (int i = 0; i < AIO_CONTEXTS; i++)
		for (int k = 0; k < aio_npending[i]; k++) {
			aio_bufs[i][k] = aio_pending[i][k];
			aio_submit(i, &aio_cbs[i][k], IOCB_CMD_PWRITE, &aio_bufs[i][k], 4096 + 64 * (2 * i + k), aio_pending[i][k]);
		}
	if (ring_of(0)->tail >= ring_of(0)->head)
		fail("the first ring's tail is not before its head");
	READY(" aio0=%p aio1=%p aio2=%p", (void *)aio_ctx[0], (void *)aio_ctx[1], (void *)aio_ctx[2]);
}

static void aio_tick(unsigned long tick) {
	if (!aio_reaped && access(aio_trigger, F_OK) == 0) {
		for (int i = 0; i < AIO_CONTEXTS; i++) {
			aio_check_pending(i);
			aio_reap(i, aio_pending[i], aio_npending[i]);
		}
		aio_reaped = 1;
		printf("aio reaped 3\n");
	}
	for (int i = 0; i < AIO_CONTEXTS; i++) {
		if (!aio_reaped && aio_npending[i]) {
			aio_check_pending(i);
			continue;
		}
		aio_round_trip(i, tick);
	}
}

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
	} else if (!strcmp(mode, "aio")) {
		aio_setup(dir);
	} else if (!strcmp(mode, "aiopoll")) {
		static struct iocb cb;
		struct iocb *p = &cb;
		int pipes[2];
		aio_context_t ctx = 0;
		if (pipe(pipes) || syscall(SYS_io_setup, 1, &ctx))
			fail("pipe, io_setup");
		cb.aio_fildes = pipes[0];
		cb.aio_lio_opcode = IOCB_CMD_POLL;
		cb.aio_buf = POLLIN;
		if (syscall(SYS_io_submit, ctx, 1, &p) != 1)
			fail("io_submit poll");
		READY(" aiopoll=%p aiopipe=%d", (void *)ctx, pipes[1]);
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
	if (aio_fd >= 0)
		aio_tick(tick);
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
