// cow: a tree whose processes share private memory copy-on-write. The
// parent fills MIB mebibytes (argv[1]) of private anonymous memory, maps
// a region it marks MADV_DONTFORK and one it marks MADV_WIPEONFORK
// (both filled), and one it leaves untouched, then forks READERS
// (argv[2]) children that only read, and a writer that writes its own
// pattern over the first mebibyte and makes it read-only. After the
// forks the parent writes its own pattern over the last mebibyte and
// fills the untouched region. It prints "ready parent=PID children=PID,PID,..."
// and then, every tick, checks its memory, asks each child to check its
// own (through a pipe each, answered on one shared pipe), and prints
// "tick N ... ok" once all have answered. With a third argument, a
// path, it also creates a file there of FILE_MIB mebibytes, maps it
// privately and fills the mapping before the forks (private copies of
// the file's pages, which the children share). A check reads a word of
// every page, another each tick. Each process expects exactly what it
// wrote or inherited: the children see neither the parent's late writes
// (they see the first pattern) nor its late-filled region (zeros), the
// wiped region as zeros, no region where the parent's MADV_DONTFORK one
// is; the writer sees its own writes, the readers not. A check that fails
// prints "FAIL ..." and exits.
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define MIB (1UL << 20)
#define FILE_MIB 32
#define MAXKIDS 64

enum role { PARENT, READER, WRITER };

static uint64_t *mem, *late, *wipe, *dontfork, *fmap;
static size_t n; // words of mem

static uint64_t first(size_t i) { return i * 0x9e3779b97f4a7c15ull + 1; }
static uint64_t parents(size_t i) { return ~first(i); }
static uint64_t writers(size_t i) { return first(i) ^ 0x5555555555555555ull; }

// perPage is how many words a page holds.
#define perPage 512

// check compares a word of every page of the memory, word off of each,
// with what role expects: a page restored wrong (another process's, or
// zeros) differs in every word, and each tick checks another.
static void check(enum role role, int who, size_t off) {
	size_t tail = n - MIB / 8, head = MIB / 8;
	for (size_t i = off; i < n; i += perPage) {
		uint64_t want = first(i);
		if (role == PARENT && i >= tail)
			want = parents(i);
		if (role == WRITER && i < head)
			want = writers(i);
		if (mem[i] != want)
			fail("process %d (role %d): word %zu is %#llx, want %#llx", who, role, i,
			     (unsigned long long)mem[i], (unsigned long long)want);
	}
	for (size_t i = off; i < MIB / 8; i += perPage) {
		uint64_t want = role == PARENT ? parents(i) : 0;
		if (late[i] != want)
			fail("process %d (role %d): late region word %zu is %#llx, want %#llx", who, role, i,
			     (unsigned long long)late[i], (unsigned long long)want);
		want = role == PARENT ? first(i) : 0;
		if (wipe[i] != want)
			fail("process %d (role %d): wiped region word %zu is %#llx, want %#llx", who, role, i,
			     (unsigned long long)wipe[i], (unsigned long long)want);
		if (role == PARENT && dontfork[i] != writers(i))
			fail("parent: MADV_DONTFORK region word %zu is %#llx", i, (unsigned long long)dontfork[i]);
	}
	for (size_t i = off; fmap && i < FILE_MIB * MIB / 8; i += perPage)
		if (fmap[i] != first(i))
			fail("process %d (role %d): file mapping word %zu is %#llx, want %#llx", who, role, i,
			     (unsigned long long)fmap[i], (unsigned long long)first(i));
	if (role != PARENT && msync(dontfork, MIB, MS_ASYNC) == 0)
		fail("process %d: the parent's MADV_DONTFORK region is mapped", who);
}

static void *region(size_t bytes) {
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		fail("mmap: %m");
	return p;
}

int main(int argc, char **argv) {
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
	int readers = argc > 2 ? atoi(argv[2]) : 8;
	if (mib < 2 || readers < 0 || readers + 1 > MAXKIDS)
		fail("usage: cow MIB READERS [FILE] (MIB >= 2, READERS < %d)", MAXKIDS);
	setvbuf(stdout, NULL, _IOLBF, 0);
	n = mib * MIB / 8;
	mem = region(mib * MIB);
	late = region(MIB);
	wipe = region(MIB);
	dontfork = region(MIB);
	for (size_t i = 0; i < n; i++)
		mem[i] = first(i);
	for (size_t i = 0; i < MIB / 8; i++) {
		wipe[i] = first(i);
		dontfork[i] = writers(i);
	}
	if (madvise(wipe, MIB, MADV_WIPEONFORK) != 0 || madvise(dontfork, MIB, MADV_DONTFORK) != 0)
		fail("madvise: %m");
	if (argc > 3) {
		int fd = open(argv[3], O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || ftruncate(fd, FILE_MIB * MIB) != 0)
			fail("create %s: %m", argv[3]);
		fmap = mmap(NULL, FILE_MIB * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		if (fmap == MAP_FAILED)
			fail("mmap %s: %m", argv[3]);
		close(fd);
		for (size_t i = 0; i < FILE_MIB * MIB / 8; i++)
			fmap[i] = first(i);
	}
	int answers[2];
	if (pipe(answers) != 0)
		fail("pipe: %m");
	int asks[MAXKIDS];
	pid_t kids[MAXKIDS];
	int nkids = readers + 1;
	for (int k = 0; k < nkids; k++) {
		int ask[2];
		if (pipe(ask) != 0)
			fail("pipe: %m");
		pid_t p = fork();
		if (p < 0)
			fail("fork: %m");
		if (p == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			enum role role = k == readers ? WRITER : READER;
			if (role == WRITER) {
				for (size_t i = 0; i < MIB / 8; i++)
					mem[i] = writers(i);
				if (mprotect(mem, MIB, PROT_READ) != 0)
					fail("mprotect: %m");
			}
			for (;;) {
				uint16_t off;
				if (read(ask[0], &off, sizeof off) != sizeof off)
					fail("read: %m");
				check(role, getpid(), off);
				if (write(answers[1], "k", 1) != 1)
					fail("write: %m");
			}
		}
		// Every end stays open in the parent too: each is one open
		// file description shared with a child.
		asks[k] = ask[1];
		kids[k] = p;
	}
	for (size_t i = n - MIB / 8; i < n; i++)
		mem[i] = parents(i);
	for (size_t i = 0; i < MIB / 8; i++)
		late[i] = parents(i);
	printf("ready parent=%d children=", getpid());
	for (int k = 0; k < nkids; k++)
		printf("%s%d", k ? "," : "", kids[k]);
	printf("\n");
	for (unsigned long tick = 0;; tick++) {
		uint16_t off = tick % perPage;
		check(PARENT, getpid(), off);
		for (int k = 0; k < nkids; k++)
			if (write(asks[k], &off, sizeof off) != sizeof off)
				fail("ask child %d: %m", kids[k]);
		for (int k = 0; k < nkids; k++) {
			char c;
			if (read(answers[0], &c, 1) != 1)
				fail("a child did not answer");
		}
		struct timespec m;
		clock_gettime(CLOCK_MONOTONIC, &m);
		printf("tick %lu mono_ns=%lld pid=%d ok\n", tick, m.tv_sec * 1000000000LL + m.tv_nsec, getpid());
		struct timespec d = {0, 20 * 1000000L};
		nanosleep(&d, NULL);
	}
}
