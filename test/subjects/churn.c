// churn: a process whose memory changes all the time, for snapshot dumps.
// It writes, one after the other and without a pause, a word in each page
// of MIB mebibytes (argv[1]) of private memory, of a MADV_DONTFORK page, a
// MADV_WIPEONFORK page and a page of shared memory: the number of the
// pass, having checked that the page held the previous pass's. Memory read
// at more than one instant holds pages out of that order, and a process
// restored from it prints "FAIL" and exits when it reaches one. With
// argv[2] = 1 a child does the same, silently, dying with its parent.
// Every 20 ms the parent prints "tick N pass=P ok".
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PAGE 4096

static uint64_t *map(size_t n, int flags, int advice) {
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	if (advice >= 0 && madvise(p, n, advice) != 0)
		fail("madvise %d: %s", advice, strerror(errno));
	return p;
}

static int64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 16;
	int child = 0;
	// The child says through set when its memory is made: the parent
	// is ready only then.
	int set[2] = {-1, -1};
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 2 && atoi(argv[2]) > 0) {
		if (pipe(set) != 0)
			fail("pipe: %s", strerror(errno));
		pid_t p = fork();
		if (p < 0)
			fail("fork: %s", strerror(errno));
		if (p == 0) {
			child = 1;
			prctl(PR_SET_PDEATHSIG, SIGKILL);
		}
	}
	// Each process maps its own memory after the fork: none is shared
	// between them.
	size_t priv = mib << 20, n = priv / PAGE + 3;
	uint8_t *mem = (uint8_t *)map(priv, MAP_PRIVATE, -1);
	uint64_t **pages = malloc(n * sizeof *pages);
	if (pages == NULL)
		fail("malloc");
	for (size_t i = 0; i < priv / PAGE; i++)
		pages[i] = (uint64_t *)(mem + i * PAGE);
	// Among the private pages, so that they are read between them.
	size_t mid = priv / PAGE / 2;
	pages[n - 3] = pages[mid];
	pages[n - 2] = pages[mid + 1];
	pages[n - 1] = pages[mid + 2];
	pages[mid] = map(PAGE, MAP_PRIVATE, MADV_DONTFORK);
	pages[mid + 1] = map(PAGE, MAP_PRIVATE, MADV_WIPEONFORK);
	pages[mid + 2] = map(PAGE, MAP_SHARED, -1);
	if (child && (write(set[1], "x", 1) != 1 || close(set[0]) != 0 || close(set[1]) != 0))
		fail("tell the parent: %s", strerror(errno));
	if (!child && set[0] >= 0) {
		char c;
		if (read(set[0], &c, 1) != 1 || close(set[0]) != 0 || close(set[1]) != 0)
			fail("wait for the child: %s", strerror(errno));
	}
	if (!child)
		printf("ready mib=%zu pages=%zu\n", mib, n);
	uint64_t pass = 0;
	int64_t last = now_ns();
	for (unsigned long tick = 0;;) {
		for (size_t i = 0; i < n; i++) {
			volatile uint64_t *p = pages[i];
			if (*p != pass)
				fail("pid %d: page %zu of %zu holds pass %lu in pass %lu", getpid(), i, n, (unsigned long)*p, (unsigned long)pass);
			*p = pass + 1;
		}
		pass++;
		int64_t t = now_ns();
		if (t - last >= 20 * 1000000LL) {
			last = t;
			if (!child)
				printf("tick %lu pass=%lu ok\n", tick++, (unsigned long)pass);
		}
	}
}
