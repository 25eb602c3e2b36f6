// shmem: a subject holding shared anonymous memory (mmap MAP_SHARED |
// MAP_ANONYMOUS), partly touched with a pattern, partly never touched,
// a read-only shared mapping, and one whose last page is a guard
// (PROT_NONE), as stress-ng makes: two VMAs of one object, which a
// restore must not take for one. Every 20 ms it checks the patterns and
// prints "tick N ... ok".
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SIZE (4 << 20)

int main(void) {
	uint32_t *rw = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint32_t *ro = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	long page = sysconf(_SC_PAGESIZE);
	uint32_t *guarded = mmap(NULL, SIZE / 4 + page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (rw == MAP_FAILED || ro == MAP_FAILED || guarded == MAP_FAILED || mprotect((char *)guarded + SIZE / 4, page, PROT_NONE) != 0) {
		perror("mmap");
		return 1;
	}
	// The first half of rw holds a pattern, the second half is never
	// touched; ro holds a pattern and is then made read-only.
	for (size_t i = 0; i < SIZE / 8; i++)
		rw[i] = (uint32_t)(i * 2654435761u);
	for (size_t i = 0; i < SIZE / 4; i++)
		ro[i] = (uint32_t)(i ^ 0x5a5a5a5a);
	mprotect(ro, SIZE, PROT_READ);
	for (size_t i = 0; i < SIZE / 16; i++)
		guarded[i] = (uint32_t)(i + 7);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready rw=%p ro=%p\n", (void *)rw, (void *)ro);
	for (unsigned long tick = 0;; tick++) {
		for (size_t i = 0; i < SIZE / 8; i += 509)
			if (rw[i] != (uint32_t)(i * 2654435761u)) {
				printf("FAIL rw pattern at %zu\n", i);
				return 1;
			}
		for (size_t i = SIZE / 8; i < SIZE / 4; i += 4096)
			if (rw[i] != 0) {
				printf("FAIL untouched rw page at %zu\n", i);
				return 1;
			}
		for (size_t i = 0; i < SIZE / 4; i += 509)
			if (ro[i] != (uint32_t)(i ^ 0x5a5a5a5a)) {
				printf("FAIL ro pattern at %zu\n", i);
				return 1;
			}
		for (size_t i = 0; i < SIZE / 16; i += 509)
			if (guarded[i] != (uint32_t)(i + 7)) {
				printf("FAIL guarded pattern at %zu\n", i);
				return 1;
			}
		rw[tick % (SIZE / 8)] = (uint32_t)((tick % (SIZE / 8)) * 2654435761u);
		struct timespec m;
		clock_gettime(CLOCK_MONOTONIC, &m);
		printf("tick %lu mono_ns=%lld pid=%d ok\n", tick, m.tv_sec * 1000000000LL + m.tv_nsec, getpid());
		struct timespec d = {0, 20 * 1000000L};
		nanosleep(&d, NULL);
	}
}
