// scale: a checkpoint/restore benchmark subject with many of one thing.
//
// Usage: scale threads N | scale maps N. With threads it starts N threads
// that each count in a slot of their own; with maps it makes N private
// anonymous mappings of two pages, the first written with its index, the
// second made read-only (so that no two merge: 2N VMAs). It prints
//   ready setup_ns=T
// T being what making them took here, the baseline of a restore, then
// every PERIOD_MS checks them all and prints "tick N ok", or "FAIL ..."
// and exits 1.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 100

static long n;
static volatile uint64_t *counts;
static char **maps;

static uint64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *counter(void *arg) {
	volatile uint64_t *slot = arg;
	for (;;) {
		(*slot)++;
		usleep(10000);
	}
	return NULL;
}

static void setup_threads(void) {
	counts = calloc(n, 64); // a cache line each
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 << 10);
	for (long i = 0; i < n; i++) {
		pthread_t t;
		if (pthread_create(&t, &attr, counter, (char *)counts + i * 64) != 0)
			fail("pthread_create %ld", i);
	}
}

static void check_threads(void) {
	static uint64_t *last;
	if (!last)
		last = calloc(n, sizeof(*last));
	// Every thread counts on, within a few periods.
	for (int round = 0; round < 50; round++) {
		long stuck = 0;
		for (long i = 0; i < n; i++) {
			uint64_t c = *(volatile uint64_t *)((char *)counts + i * 64);
			if (c == last[i])
				stuck++;
		}
		if (stuck == 0)
			break;
		if (round == 49)
			fail("%ld of %ld threads do not count", stuck, n);
		usleep(20000);
	}
	for (long i = 0; i < n; i++)
		last[i] = *(volatile uint64_t *)((char *)counts + i * 64);
}

static void setup_maps(void) {
	maps = calloc(n, sizeof(*maps));
	for (long i = 0; i < n; i++) {
		char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			fail("mmap %ld", i);
		memcpy(p, &i, sizeof(i));
		if (mprotect(p + 4096, 4096, PROT_READ) != 0)
			fail("mprotect %ld", i);
		maps[i] = p;
	}
}

static void check_maps(void) {
	for (long i = 0; i < n; i++) {
		long v;
		memcpy(&v, maps[i], sizeof(v));
		if (v != i)
			fail("mapping %ld at %p holds %ld", i, maps[i], v);
	}
}

int main(int argc, char **argv) {
	if (argc != 3)
		fail("usage: scale threads|maps N");
	n = strtol(argv[2], NULL, 10);
	int threads = strcmp(argv[1], "threads") == 0;
	uint64_t start = now_ns();
	if (threads)
		setup_threads();
	else
		setup_maps();
	printf("ready setup_ns=%llu\n", (unsigned long long)(now_ns() - start));
	fflush(stdout);
	for (long tick = 1;; tick++) {
		usleep(PERIOD_MS * 1000);
		if (threads)
			check_threads();
		else
			check_maps();
		printf("tick %ld ok\n", tick);
		fflush(stdout);
	}
}
