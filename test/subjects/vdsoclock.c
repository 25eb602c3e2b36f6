// vdsoclock: a checkpoint/restore subject that calls the vDSO both through
// glibc and through function pointers it resolved from the vDSO at start,
// as libc caches them, and checks every result against the system call.
//
// Every PERIOD_MS it prints one line to stdout:
//   tick N mono_ns=T pid=P ok
// or "FAIL ..." and exits 1 when a check fails. A restore is correct when
// the ticks go on, monotonic time never goes back, and no FAIL appears.
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "vdsosym.h"

#define PERIOD_MS 20
#define PATTERN_BYTES (4 << 20)

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);
typedef int (*gettimeofday_fn)(struct timeval *, void *);
typedef time_t (*time_fn)(time_t *);
typedef int (*getcpu_fn)(unsigned *, unsigned *, void *);

static clock_gettime_fn vdso_clock_gettime;
static gettimeofday_fn vdso_gettimeofday;
static time_fn vdso_time;
static getcpu_fn vdso_getcpu;

static void fail(const char *what, long long a, long long b) {
	printf("FAIL %s: %lld vs %lld\n", what, a, b);
	fflush(stdout);
	exit(1);
}

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

// bracket checks that a vDSO reading lies between two system call readings.
static void check_clock(const char *name, clockid_t clk, clock_gettime_fn f) {
	struct timespec a, v, b;
	syscall(SYS_clock_gettime, clk, &a);
	if (f(clk, &v) != 0)
		fail(name, -1, 0);
	syscall(SYS_clock_gettime, clk, &b);
	if (ns(v) < ns(a) || ns(v) > ns(b))
		fail(name, ns(v), ns(a));
}

static void check_all(void) {
	const clockid_t clocks[] = {CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_MONOTONIC_RAW};
	for (unsigned i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
		check_clock("vdso clock_gettime", clocks[i], vdso_clock_gettime);
		check_clock("libc clock_gettime", clocks[i], clock_gettime);
	}
	struct timeval tv;
	struct timespec a, b;
	syscall(SYS_clock_gettime, CLOCK_REALTIME, &a);
	if (vdso_gettimeofday(&tv, NULL) != 0)
		fail("vdso gettimeofday", -1, 0);
	syscall(SYS_clock_gettime, CLOCK_REALTIME, &b);
	long long us = tv.tv_sec * 1000000LL + tv.tv_usec;
	if (us < ns(a) / 1000 || us > ns(b) / 1000)
		fail("vdso gettimeofday", us, ns(a) / 1000);
	gettimeofday(&tv, NULL);
	time_t t0 = syscall(SYS_time, NULL);
	time_t t = vdso_time(NULL);
	time_t t1 = syscall(SYS_time, NULL);
	if (t < t0 || t > t1)
		fail("vdso time", t, t0);
	if (time(NULL) < t0)
		fail("libc time", time(NULL), t0);
	unsigned cpu = ~0u, node = ~0u, scpu = ~0u;
	if (vdso_getcpu(&cpu, &node, NULL) != 0 || cpu >= (unsigned)CPU_SETSIZE)
		fail("vdso getcpu", cpu, 0);
	if (syscall(SYS_getcpu, &scpu, NULL, NULL) != 0 || sched_getcpu() < 0)
		fail("getcpu", scpu, 0);
}

int main(void) {
	vdso_clock_gettime = vdso_sym("__vdso_clock_gettime");
	vdso_gettimeofday = vdso_sym("__vdso_gettimeofday");
	vdso_time = vdso_sym("__vdso_time");
	vdso_getcpu = vdso_sym("__vdso_getcpu");
	if (!vdso_clock_gettime || !vdso_gettimeofday || !vdso_time || !vdso_getcpu)
		fail("resolve vDSO symbols", 0, 0);

	// A pattern in heap memory that must survive.
	uint32_t *pattern = malloc(PATTERN_BYTES);
	for (size_t i = 0; i < PATTERN_BYTES / 4; i++)
		pattern[i] = (uint32_t)(i * 2654435761u);

	setvbuf(stdout, NULL, _IOLBF, 0);
	long long last = 0;
	for (unsigned long tick = 0;; tick++) {
		check_all();
		for (size_t i = 0; i < PATTERN_BYTES / 4; i += 1021)
			if (pattern[i] != (uint32_t)(i * 2654435761u))
				fail("memory pattern", i, pattern[i]);
		struct timespec m;
		clock_gettime(CLOCK_MONOTONIC, &m);
		if (ns(m) < last)
			fail("monotonic clock went back", ns(m), last);
		last = ns(m);
		printf("tick %lu mono_ns=%lld pid=%d ok\n", tick, last, getpid());
		struct timespec d = {0, PERIOD_MS * 1000000L};
		while (nanosleep(&d, &d) != 0 && errno == EINTR)
			;
	}
}
