// vdsocall: measures the cost of clock_gettime through a pointer resolved
// from the vDSO at start (as libc caches it), for the proxy benchmark.
// Every 50 ms it prints "tick N ns_per_call=X ok".
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>
#include <unistd.h>

#include "vdsosym.h"

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

int main(void) {
	clock_gettime_fn f = vdso_sym("__vdso_clock_gettime");
	if (!f) {
		printf("FAIL no __vdso_clock_gettime\n");
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready\n");
	for (unsigned long tick = 0;; tick++) {
		enum { calls = 200000 };
		struct timespec a, b, x;
		clock_gettime(CLOCK_MONOTONIC_RAW, &a);
		for (int i = 0; i < calls; i++)
			f(CLOCK_MONOTONIC, &x);
		clock_gettime(CLOCK_MONOTONIC_RAW, &b);
		double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / calls;
		printf("tick %lu ns_per_call=%.2f ok\n", tick, ns);
		struct timespec d = {0, 50 * 1000000L};
		nanosleep(&d, NULL);
	}
}
