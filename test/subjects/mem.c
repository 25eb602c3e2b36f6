// mem: a checkpoint/restore benchmark subject. It touches MIB mebibytes
// (argv[1]) of anonymous memory with a pattern, prints "ready", then every
// 20 ms checks a sample of the pattern and prints "tick N ... ok".
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 16;
	size_t n = mib << 20;
	uint64_t *mem = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	for (size_t i = 0; i < n / 8; i++)
		mem[i] = i * 0x9e3779b97f4a7c15ull;
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready mib=%zu\n", mib);
	for (unsigned long tick = 0;; tick++) {
		for (size_t i = 0; i < n / 8; i += 4093)
			if (mem[i] != i * 0x9e3779b97f4a7c15ull) {
				printf("FAIL pattern at %zu\n", i);
				return 1;
			}
		struct timespec m;
		clock_gettime(CLOCK_MONOTONIC, &m);
		printf("tick %lu mono_ns=%lld pid=%d ok\n", tick, m.tv_sec * 1000000000LL + m.tv_nsec, getpid());
		struct timespec d = {0, 20 * 1000000L};
		nanosleep(&d, NULL);
	}
}
