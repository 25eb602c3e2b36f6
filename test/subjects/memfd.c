// memfd: a subject holding memfds: one with a pattern, mapped MAP_SHARED
// read-write and MAP_PRIVATE with a few copied-on-write pages, kept open
// at a known position; and a sealed one (F_SEAL_GROW|F_SEAL_SHRINK) held
// only by its descriptor; and a descriptor of shared anonymous memory
// (opened through /proc/self/map_files, then unmapped: "/dev/zero
// (deleted)"), O_APPEND, holding SHMEM_DATA, at position 3; with the
// argument "mapped", its memory stays mapped too, which a dump refuses.
// And a memfd holding a script ("#!/bin/true"), read-write, that it
// executes (execveat) every tenth tick: a memfd's own descriptor does not
// count as a writer, which a descriptor opened again would (ETXTBSY).
// Every 20 ms it checks everything and prints "tick N ... ok", or FAIL
// and exits 1.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SIZE (1 << 20)
#define SEALED_SIZE (64 << 10)
#define POS 12345
#define COW_PAGES 4
#define SHMEM_DATA "shared anonymous"

static uint32_t pat(size_t i) { return (uint32_t)(i * 2654435761u); }

// runs reports whether the script memfd xfd executes and exits 0.
static int runs(int xfd) {
	pid_t pid = fork();
	if (pid == 0) {
		char *argv[] = {"true", NULL}, *envp[] = {NULL};
		syscall(SYS_execveat, xfd, "", argv, envp, AT_EMPTY_PATH);
		printf("FAIL execveat memfd: %s\n", strerror(errno));
		_exit(1);
	}
	int st;
	return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

int main(int argc, char **argv) {
	int mapped = argc > 1 && strcmp(argv[1], "mapped") == 0;
	int fd = memfd_create("cryo-pattern", MFD_CLOEXEC);
	int sfd = memfd_create("cryo-sealed", MFD_ALLOW_SEALING);
	if (fd < 0 || sfd < 0 || ftruncate(fd, SIZE) || ftruncate(sfd, SEALED_SIZE)) {
		perror("memfd");
		return 1;
	}
	uint32_t *sh = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (sh == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	// The last quarter of the object is never touched.
	for (size_t i = 0; i < SIZE / 4 * 3 / 4; i++)
		sh[i] = pat(i);
	// A private mapping of the second half; its first pages are changed.
	uint32_t *pv = mmap(NULL, SIZE / 2, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, SIZE / 2);
	if (pv == MAP_FAILED) {
		perror("mmap private");
		return 1;
	}
	for (size_t p = 0; p < COW_PAGES; p++)
		pv[p * 1024] = 0xc0c00000u + (uint32_t)p;
	if (lseek(fd, POS, SEEK_SET) != POS) {
		perror("lseek");
		return 1;
	}
	if (pwrite(sfd, "sealed!", 7, 4096) != 7 || fcntl(sfd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK)) {
		perror("seal");
		return 1;
	}
	char path[64];
	void *anon = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (long)anon, (long)anon + 4096);
	int zfd = open(path, O_RDWR);
	if (anon == MAP_FAILED || zfd < 0 || (!mapped && munmap(anon, 4096)) || ftruncate(zfd, 0) ||
	    fcntl(zfd, F_SETFL, O_APPEND) || write(zfd, SHMEM_DATA, strlen(SHMEM_DATA)) != (ssize_t)strlen(SHMEM_DATA) ||
	    lseek(zfd, 3, SEEK_SET) != 3) {
		perror("shared anonymous memory descriptor");
		return 1;
	}
	// Not close-on-exec: the interpreter of a script reopens it.
	int xfd = memfd_create("cryo-script", 0);
	if (xfd < 0 || write(xfd, "#!/bin/true\n", 12) != 12) {
		perror("script memfd");
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!runs(xfd)) {
		printf("FAIL script memfd does not run before the dump\n");
		return 1;
	}
	printf("ready fd=%d sfd=%d zfd=%d sh=%p pv=%p\n", fd, sfd, zfd, (void *)sh, (void *)pv);
	for (unsigned long tick = 0;; tick++) {
		for (size_t i = 0; i < SIZE / 4 * 3 / 4; i += 509)
			if (sh[i] != pat(i)) {
				printf("FAIL shared pattern at %zu\n", i);
				return 1;
			}
		for (size_t i = SIZE / 4 * 3 / 4; i < SIZE / 4; i += 1024)
			if (sh[i] != 0) {
				printf("FAIL untouched page at %zu\n", i);
				return 1;
			}
		for (size_t i = 0; i < SIZE / 8; i += 1024) {
			size_t p = i / 1024;
			uint32_t want = p < COW_PAGES ? 0xc0c00000u + (uint32_t)p : pat(SIZE / 8 + i);
			if (i + 1 < SIZE / 8 && p < COW_PAGES && pv[i + 1] != pat(SIZE / 8 + i + 1)) {
				printf("FAIL private copy of page %zu lost the rest\n", p);
				return 1;
			}
			if (i < SIZE / 4 * 3 / 4 - SIZE / 8 && pv[i] != want) {
				printf("FAIL private page %zu\n", p);
				return 1;
			}
		}
		// A write through the shared mapping shows in the private one
		// only where it was not copied.
		size_t k = SIZE / 8 + COW_PAGES * 1024 + 7;
		sh[k] = pat(k);
		if (lseek(fd, 0, SEEK_CUR) != POS) {
			printf("FAIL position %ld\n", (long)lseek(fd, 0, SEEK_CUR));
			return 1;
		}
		char b[8] = {0};
		if (pread(sfd, b, 7, 4096) != 7 || strcmp(b, "sealed!") != 0) {
			printf("FAIL sealed contents\n");
			return 1;
		}
		if (fcntl(sfd, F_GET_SEALS) != (F_SEAL_GROW | F_SEAL_SHRINK)) {
			printf("FAIL seals %#x\n", fcntl(sfd, F_GET_SEALS));
			return 1;
		}
		if (ftruncate(sfd, SEALED_SIZE * 2) == 0) {
			printf("FAIL sealed memfd grew\n");
			return 1;
		}
		char z[sizeof SHMEM_DATA] = {0}, link[64] = {0};
		struct statfs fs;
		snprintf(path, sizeof path, "/proc/self/fd/%d", zfd);
		if (pread(zfd, z, sizeof z - 1, 0) != sizeof z - 1 || strcmp(z, SHMEM_DATA) != 0 ||
		    lseek(zfd, 0, SEEK_CUR) != 3 || !(fcntl(zfd, F_GETFL) & O_APPEND) ||
		    readlink(path, link, sizeof link - 1) < 0 || strcmp(link, "/dev/zero (deleted)") != 0 ||
		    fstatfs(zfd, &fs) || fs.f_type != TMPFS_MAGIC) {
			printf("FAIL shared anonymous memory descriptor: %s at %ld, %s\n", z, (long)lseek(zfd, 0, SEEK_CUR), link);
			return 1;
		}
		if (tick % 10 == 0 && !runs(xfd)) {
			printf("FAIL script memfd does not run\n");
			return 1;
		}
		struct timespec m;
		clock_gettime(CLOCK_MONOTONIC, &m);
		printf("tick %lu mono_ns=%lld pid=%d ok\n", tick, m.tv_sec * 1000000000LL + m.tv_nsec, getpid());
		struct timespec d = {0, 20 * 1000000L};
		nanosleep(&d, NULL);
	}
}
