// uring: a checkpoint/restore subject holding an io_uring instance, used
// through raw system calls as liburing uses it: the rings mapped once
// (IORING_FEAT_SINGLE_MMAP) and kept from children (MADV_DONTFORK, as
// io_uring_ring_dontfork), private copies of the SQ tail and CQ head, a
// thread blocked in io_uring_enter(GETEVENTS) that reaps every CQE (as
// MariaDB's InnoDB has one).
//
// Usage: uring DIR MODE. Modes it keeps running with:
//   idle     a ring of 64 SQEs and 128 CQEs whose counters are moved
//            past 2^16 by 70,000 NOPs at the start; every tick, a write
//            of the tick's number to a pipe and a read of it back, through
//            the ring, reaped by the waiting thread, and the ring's
//            counters checked against the subject's own copies
//   pending  as idle, but the ring holds 2 CQEs not reaped (NOPs tagged
//            0xc1 and 0xc2) and an SQE written and not submitted (a NOP
//            tagged 0x51), and a ring of 64 SQEs and 256 CQEs
//            (IORING_SETUP_CQSIZE); every tick it checks they are still
//            there, untouched, until DIR/uring.go exists: then it reaps
//            the two, submits the pending SQE and checks its CQE, prints
//            "uring drained", and goes on as idle
//   big      as idle, with a ring of 64 SQEs of 128 bytes and 128 CQEs
//            of 32 (IORING_SETUP_SQE128, CQE32) after 5,000 NOPs
//   nosqarray  as idle, with a ring of 1024 SQEs without an SQ array
//            (IORING_SETUP_NO_SQARRAY, as liburing 2.5 and later ask for)
//            after 5,000 NOPs
// Modes a dump must refuse:
//   inflight  a read of an empty pipe, in flight (armed with poll)
//   timeout   a timeout of an hour, in flight
//   files     a registered file (IORING_REGISTER_FILES)
//   eventfd   a registered eventfd (IORING_REGISTER_EVENTFD)
//   regring   its descriptor registered (IORING_REGISTER_RING_FDS)
//   pbuf      provided buffers (IORING_OP_PROVIDE_BUFFERS)
//   sqpoll    IORING_SETUP_SQPOLL
//   single    IORING_SETUP_SINGLE_ISSUER
//   iopoll    IORING_SETUP_IOPOLL
//   sqe128    IORING_SETUP_SQE128 on a ring of 8 SQEs, whose mappings
//             take a page whatever its flags: they cannot tell it
//   disabled  IORING_SETUP_R_DISABLED
//   unmapped  the rings unmapped after setup
// (The refused modes use no waiting thread.)
//
// Once set up it prints
//   ready fd=FD rings=ADDR sqes=ADDR
// then every tick
//   tick N ok
// or "FAIL ..." and exits 1 when a check fails.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

#include "subject.h"

#define PERIOD_MS 20

#ifndef IORING_SETUP_SQE128
#define IORING_SETUP_SQE128 (1U << 10)
#endif
#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)
#endif
#ifndef IORING_SETUP_CQE32
#define IORING_SETUP_CQE32 (1U << 11)
#endif
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif

static int ring_fd;
static struct io_uring_params p;
static unsigned char *rings;
static struct io_uring_sqe *sqes;
static size_t rings_size, sqes_size;
static unsigned *sq_head, *sq_tail, *sq_array, *cq_head, *cq_tail;
static struct io_uring_cqe *cqes;
// The subject's own copies, as liburing keeps them: the SQ tail it has
// written up to, the SQ head it has seen the kernel take, the CQ head it
// has reaped up to.
static unsigned my_sq_tail, my_cq_head;

static int sys_setup(unsigned n, struct io_uring_params *pp) { return syscall(SYS_io_uring_setup, n, pp); }
static int sys_enter(unsigned submit, unsigned min, unsigned flags) {
	return syscall(SYS_io_uring_enter, ring_fd, submit, min, flags, NULL, 0);
}
static int sys_register(unsigned op, void *arg, unsigned n) { return syscall(SYS_io_uring_register, ring_fd, op, arg, n); }

static void setup(unsigned entries, unsigned flags, unsigned cq) {
	memset(&p, 0, sizeof p);
	p.flags = flags;
	p.cq_entries = cq;
	p.sq_thread_idle = 1000;
	ring_fd = sys_setup(entries, &p);
	if (ring_fd < 0)
		fail("io_uring_setup %u flags %#x: %s", entries, flags, strerror(errno));
	if (!(p.features & IORING_FEAT_SINGLE_MMAP))
		fail("no IORING_FEAT_SINGLE_MMAP");
	size_t sqsz = (flags & IORING_SETUP_NO_SQARRAY) ? 0 : p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cqsz = p.cq_off.cqes + p.cq_entries * ((flags & IORING_SETUP_CQE32) ? 32 : 16);
	rings_size = sqsz > cqsz ? sqsz : cqsz;
	sqes_size = p.sq_entries * ((flags & IORING_SETUP_SQE128) ? 128 : 64);
	rings = mmap(NULL, rings_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQ_RING);
	sqes = mmap(NULL, sqes_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQES);
	if (rings == MAP_FAILED || sqes == MAP_FAILED)
		fail("mmap ring: %s", strerror(errno));
	if (madvise(rings, rings_size, MADV_DONTFORK) != 0 || madvise(sqes, sqes_size, MADV_DONTFORK) != 0)
		fail("madvise DONTFORK: %s", strerror(errno));
	sq_head = (unsigned *)(rings + p.sq_off.head);
	sq_tail = (unsigned *)(rings + p.sq_off.tail);
	sq_array = (unsigned *)(rings + p.sq_off.array);
	cq_head = (unsigned *)(rings + p.cq_off.head);
	cq_tail = (unsigned *)(rings + p.cq_off.tail);
	cqes = (struct io_uring_cqe *)(rings + p.cq_off.cqes);
	my_sq_tail = *sq_tail;
	my_cq_head = *cq_head;
}

// sqe_at is SQE i; cqe_at the CQE of counter n (of 128 and 32 bytes
// with IORING_SETUP_SQE128, CQE32).
static struct io_uring_sqe *sqe_at(unsigned i) {
	return (struct io_uring_sqe *)((char *)sqes + ((size_t)i << ((p.flags & IORING_SETUP_SQE128) ? 7 : 6)));
}
static struct io_uring_cqe *cqe_at(unsigned n) {
	size_t i = n & (p.cq_entries - 1);
	return (struct io_uring_cqe *)((char *)cqes + (i << ((p.flags & IORING_SETUP_CQE32) ? 5 : 4)));
}

// get_sqe returns the next SQE, zeroed, and puts it in the SQ array.
static struct io_uring_sqe *get_sqe(void) {
	unsigned i = my_sq_tail & (p.sq_entries - 1);
	struct io_uring_sqe *e = sqe_at(i);
	memset(e, 0, (p.flags & IORING_SETUP_SQE128) ? 128 : 64);
	if (!(p.flags & IORING_SETUP_NO_SQARRAY))
		sq_array[i] = i;
	my_sq_tail++;
	return e;
}

static void publish(void) { __atomic_store_n(sq_tail, my_sq_tail, __ATOMIC_RELEASE); }

// submit publishes the SQEs written and submits n of them.
static void submit(unsigned n) {
	publish();
	int r = sys_enter(n, 0, 0);
	if (r != (int)n)
		fail("io_uring_enter submit %u: %d %s", n, r, r < 0 ? strerror(errno) : "");
}

// The waiting thread reaps every CQE into results, by tag.
#define TAGS 1024
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int results[TAGS];
static int have[TAGS];
static int reaper_on;

static void *reaper(void *arg) {
	(void)arg;
	for (;;) {
		int r = sys_enter(0, 1, IORING_ENTER_GETEVENTS);
		if (r < 0 && errno != EINTR)
			fail("io_uring_enter GETEVENTS: %s", strerror(errno));
		pthread_mutex_lock(&mu);
		unsigned tail = __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE);
		while (my_cq_head != tail) {
			struct io_uring_cqe *c = cqe_at(my_cq_head);
			if (c->user_data >= TAGS)
				fail("CQE with tag %#llx", (unsigned long long)c->user_data);
			results[c->user_data] = c->res;
			have[c->user_data] = 1;
			my_cq_head++;
		}
		__atomic_store_n(cq_head, my_cq_head, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&cond);
		pthread_mutex_unlock(&mu);
	}
	return NULL;
}

// await waits for the CQE of tag and returns its result.
static int await(unsigned tag) {
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 10;
	pthread_mutex_lock(&mu);
	while (!have[tag])
		if (pthread_cond_timedwait(&cond, &mu, &deadline) == ETIMEDOUT)
			fail("no CQE for tag %u in 10 s (SQ head %u tail %u, CQ head %u tail %u)", tag, *sq_head, *sq_tail, *cq_head, *cq_tail);
	have[tag] = 0;
	int r = results[tag];
	pthread_mutex_unlock(&mu);
	return r;
}

static int pipefd[2];

// round_trip writes n to the pipe and reads it back, through the ring.
static void round_trip(unsigned long n) {
	unsigned long in = n, out = 0;
	struct io_uring_sqe *e = get_sqe();
	e->opcode = IORING_OP_WRITE;
	e->fd = pipefd[1];
	e->addr = (uintptr_t)&in;
	e->len = sizeof in;
	e->user_data = 1;
	submit(1);
	int r = await(1);
	if (r != sizeof in)
		fail("write through the ring: %d", r);
	e = get_sqe();
	e->opcode = IORING_OP_READ;
	e->fd = pipefd[0];
	e->addr = (uintptr_t)&out;
	e->len = sizeof out;
	e->user_data = 2;
	submit(1);
	r = await(2);
	if (r != sizeof out || out != n)
		fail("read through the ring: %d, %lu, want %lu", r, out, n);
	// The kernel took every SQE written, and the reaper reaped every CQE.
	pthread_mutex_lock(&mu);
	unsigned h = __atomic_load_n(sq_head, __ATOMIC_ACQUIRE), t = *cq_tail;
	if (h != my_sq_tail || *sq_tail != my_sq_tail || t != my_cq_head || *cq_head != my_cq_head)
		fail("counters: SQ head %u tail %u (mine %u), CQ head %u tail %u (mine %u)", h, *sq_tail, my_sq_tail, *cq_head, t, my_cq_head);
	pthread_mutex_unlock(&mu);
}

// advance moves the counters by n NOPs, reaped here (before the reaper
// runs).
static void advance(unsigned n) {
	while (n > 0) {
		unsigned b = n < p.sq_entries ? n : p.sq_entries;
		for (unsigned i = 0; i < b; i++)
			get_sqe()->user_data = 3;
		submit(b);
		my_cq_head = __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE);
		__atomic_store_n(cq_head, my_cq_head, __ATOMIC_RELEASE);
		n -= b;
	}
}

// The pending state: CQEs not reaped, an SQE not submitted.
static const unsigned long long pend_cqe[2] = {0xc1, 0xc2};
static const unsigned long long pend_sqe = 0x51;
static unsigned pend_cq_head;

static void make_pending(void) {
	for (int i = 0; i < 2; i++)
		get_sqe()->user_data = pend_cqe[i];
	submit(2);
	struct io_uring_sqe *e = get_sqe();
	e->opcode = IORING_OP_NOP;
	e->user_data = pend_sqe;
	publish();
	pend_cq_head = my_cq_head;
}

static void check_pending(void) {
	if (*cq_head != pend_cq_head || *cq_tail != pend_cq_head + 2)
		fail("pending CQEs: CQ head %u tail %u, want %u and %u", *cq_head, *cq_tail, pend_cq_head, pend_cq_head + 2);
	for (int i = 0; i < 2; i++) {
		struct io_uring_cqe *c = cqe_at(pend_cq_head + i);
		if (c->user_data != pend_cqe[i] || c->res != 0)
			fail("pending CQE %d: tag %#llx res %d", i, (unsigned long long)c->user_data, c->res);
	}
	unsigned h = *sq_head;
	if (*sq_tail != h + 1 || my_sq_tail != h + 1)
		fail("pending SQE: SQ head %u tail %u (mine %u)", h, *sq_tail, my_sq_tail);
	struct io_uring_sqe *e = sqe_at(sq_array[h & (p.sq_entries - 1)]);
	if (e->opcode != IORING_OP_NOP || e->user_data != pend_sqe)
		fail("pending SQE: opcode %d tag %#llx", e->opcode, (unsigned long long)e->user_data);
}

// drain reaps the pending CQEs and submits the pending SQE.
static void drain(void) {
	for (int i = 0; i < 2; i++) {
		struct io_uring_cqe *c = cqe_at(my_cq_head);
		if (c->user_data != pend_cqe[i])
			fail("drain CQE %d: tag %#llx", i, (unsigned long long)c->user_data);
		my_cq_head++;
	}
	__atomic_store_n(cq_head, my_cq_head, __ATOMIC_RELEASE);
	if (sys_enter(1, 1, IORING_ENTER_GETEVENTS) != 1)
		fail("submit the pending SQE: %s", strerror(errno));
	if (*cq_tail != my_cq_head + 1 || cqe_at(my_cq_head)->user_data != pend_sqe)
		fail("the pending SQE's CQE: CQ tail %u, head %u", *cq_tail, my_cq_head);
	my_cq_head++;
	__atomic_store_n(cq_head, my_cq_head, __ATOMIC_RELEASE);
}

static void start_reaper(void) {
	pthread_t th;
	reaper_on = 1;
	if (pthread_create(&th, NULL, reaper, NULL) != 0)
		fail("pthread_create");
}

int main(int argc, char **argv) {
	if (argc < 3)
		fail("usage: uring DIR MODE");
	const char *dir = argv[1], *mode = argv[2];
	if (pipe(pipefd) != 0)
		fail("pipe: %s", strerror(errno));
	int pending = strcmp(mode, "pending") == 0;
	int idle = strcmp(mode, "idle") == 0 || strcmp(mode, "nosqarray") == 0 || strcmp(mode, "big") == 0;
	if (strcmp(mode, "idle") == 0) {
		setup(64, 0, 0);
		advance(70000);
	} else if (strcmp(mode, "big") == 0) {
		setup(64, IORING_SETUP_SQE128 | IORING_SETUP_CQE32, 0);
		advance(5000);
	} else if (strcmp(mode, "nosqarray") == 0) {
		setup(1024, IORING_SETUP_NO_SQARRAY, 0);
		advance(5000);
	} else if (pending) {
		setup(64, IORING_SETUP_CQSIZE, 256);
		advance(1000);
		make_pending();
	} else if (strcmp(mode, "inflight") == 0) {
		setup(8, 0, 0);
		static char buf[8];
		struct io_uring_sqe *e = get_sqe();
		e->opcode = IORING_OP_READ;
		e->fd = pipefd[0];
		e->addr = (uintptr_t)buf;
		e->len = sizeof buf;
		submit(1);
	} else if (strcmp(mode, "timeout") == 0) {
		setup(8, 0, 0);
		static struct __kernel_timespec ts = {3600, 0};
		struct io_uring_sqe *e = get_sqe();
		e->opcode = IORING_OP_TIMEOUT;
		e->addr = (uintptr_t)&ts;
		e->len = 1;
		submit(1);
	} else if (strcmp(mode, "files") == 0) {
		setup(8, 0, 0);
		if (sys_register(IORING_REGISTER_FILES, pipefd, 2) != 0)
			fail("register files: %s", strerror(errno));
	} else if (strcmp(mode, "eventfd") == 0) {
		setup(8, 0, 0);
		int efd = eventfd(0, EFD_CLOEXEC);
		if (sys_register(IORING_REGISTER_EVENTFD, &efd, 1) != 0)
			fail("register eventfd: %s", strerror(errno));
	} else if (strcmp(mode, "pbuf") == 0) {
		setup(8, 0, 0);
		static char bufs[4][64];
		struct io_uring_sqe *e = get_sqe();
		e->opcode = IORING_OP_PROVIDE_BUFFERS;
		e->fd = 4;
		e->addr = (uintptr_t)bufs;
		e->len = 64;
		e->buf_group = 7;
		submit(1);
		my_cq_head = *cq_tail;
		*cq_head = my_cq_head;
	} else if (strcmp(mode, "regring") == 0) {
		setup(8, 0, 0);
		struct io_uring_rsrc_update up = {.offset = -1U, .data = ring_fd};
		if (sys_register(20 /* IORING_REGISTER_RING_FDS */, &up, 1) != 1)
			fail("register ring fd: %s", strerror(errno));
	} else if (strcmp(mode, "sqpoll") == 0) {
		setup(8, IORING_SETUP_SQPOLL, 0);
	} else if (strcmp(mode, "single") == 0) {
		setup(8, IORING_SETUP_SINGLE_ISSUER, 0);
	} else if (strcmp(mode, "iopoll") == 0) {
		setup(8, IORING_SETUP_IOPOLL, 0);
	} else if (strcmp(mode, "sqe128") == 0) {
		setup(8, IORING_SETUP_SQE128, 0);
	} else if (strcmp(mode, "disabled") == 0) {
		setup(8, IORING_SETUP_R_DISABLED, 0);
	} else if (strcmp(mode, "unmapped") == 0) {
		setup(8, 0, 0);
		munmap(rings, rings_size);
		munmap(sqes, sqes_size);
	} else {
		fail("unknown mode %s", mode);
	}
	int running = idle || pending;
	char trigger[4096];
	snprintf(trigger, sizeof trigger, "%s/uring.go", dir);
	printf("ready fd=%d rings=%#lx sqes=%#lx\n", ring_fd, (unsigned long)rings, (unsigned long)sqes);
	fflush(stdout);
	if (running && !pending)
		start_reaper();
	for (unsigned long tick = 1;; tick++) {
		nap_ms(PERIOD_MS);
		if (pending) {
			struct stat st;
			if (stat(trigger, &st) != 0) {
				check_pending();
			} else {
				drain();
				pending = 0;
				printf("uring drained\n");
				start_reaper();
			}
		}
		if (running && !pending)
			round_trip(tick);
		printf("tick %lu ok\n", tick);
		fflush(stdout);
	}
}
