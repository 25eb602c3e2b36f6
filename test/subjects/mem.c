// mem: a checkpoint/restore benchmark subject. It touches MIB mebibytes
// (argv[1]) of anonymous memory with a pattern, prints "ready", then every
// 20 ms checks a sample of the pattern and prints "tick N ... ok". With
// PROCS (argv[2]) it is a tree: it forks PROCS-1 children first, and each
// touches MIB of its own and checks it, silently, until its parent dies.
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 16;
	size_t procs = argc > 2 ? strtoul(argv[2], NULL, 10) : 1;
	size_t n = mib << 20;
	int child = 0, touched[2];
	if (pipe(touched) != 0) {
		perror("pipe");
		return 1;
	}
	for (size_t i = 1; i < procs && !child; i++) {
		pid_t p = fork();
		if (p < 0) {
			perror("fork");
			return 1;
		}
		if (p == 0) {
			child = 1;
			prctl(PR_SET_PDEATHSIG, SIGKILL);
		}
	}
	uint64_t *mem = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	for (size_t i = 0; i < n / 8; i++)
		mem[i] = i * 0x9e3779b97f4a7c15ull;
	if (child) {
		close(touched[0]);
		if (write(touched[1], "", 1) != 1)
			return 1;
		close(touched[1]);
		for (;;) {
			for (size_t i = 0; i < n / 8; i += 4093)
				if (mem[i] != i * 0x9e3779b97f4a7c15ull) {
					printf("FAIL pattern at %zu in child %d\n", i, getpid());
					fflush(stdout);
					return 1;
				}
			sleep(1);
		}
	}
	close(touched[1]);
	char c;
	for (size_t i = 1; i < procs; i++)
		if (read(touched[0], &c, 1) != 1) {
			perror("read");
			return 1;
		}
	close(touched[0]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready mib=%zu procs=%zu\n", mib, procs);
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
