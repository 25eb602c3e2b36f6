// sysvshm: a subject attached to a System V shared memory segment it
// makes, of a size that is no multiple of pages, three times: read-write
// (its third page then made read-only by mprotect, which splits the
// attachment), read-only (SHM_RDONLY) and read-only executable
// (SHM_RDONLY | SHM_EXEC). The segment holds a pattern in its first,
// third and last (partial) pages; its second page is never written.
//
// Usage: sysvshm [rmid] [fork] [drop]. rmid removes the segment
// (IPC_RMID) once attached: it lives on, marked for destruction, while
// attached. fork makes a child that inherits the attachments and counts
// in the segment while the parent checks the count goes on. drop makes
// it nobody (65534) once attached, which the segment's mode (0640, owned
// by root) would not let attach it.
//
// It prints "ready shmid=ID key=KEY child=PID" (child=0 without fork),
// then every 20 ms checks the pattern through every attachment and
// prints "tick N mono_ns=T pid=P ext=E ok", E being the segment's first
// word, which other processes may write, or "FAIL ..." and exits 1.
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <grp.h>
#include <sys/shm.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PAGE 4096
#define SIZE (3 * PAGE + 100)
#define WORDS (SIZE / 4)
// Words 0-2 are counters: outsiders' (ext), the parent's tick, the child's.
#define FIRST 16

static uint32_t pattern(size_t i) { return (uint32_t)(i * 2654435761u); }

static int patterned(size_t i) { return i >= FIRST && (i < PAGE / 4 || i >= 2 * PAGE / 4); }

static void check(const char *what, volatile uint32_t *m) {
	for (size_t i = FIRST; i < WORDS; i++) {
		uint32_t want = patterned(i) ? pattern(i) : 0;
		if (m[i] != want)
			fail("%s attachment: word %zu is %#x, want %#x", what, i, m[i], want);
	}
}

static void pause_ms(long ms) {
	struct timespec d = {0, ms * 1000000L};
	nanosleep(&d, NULL);
}

int main(int argc, char **argv) {
	int rmid = 0, forked = 0, drop = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "rmid") == 0)
			rmid = 1;
		else if (strcmp(argv[i], "fork") == 0)
			forked = 1;
		else if (strcmp(argv[i], "drop") == 0)
			drop = 1;
		else
			fail("unknown argument %s", argv[i]);
	}
	key_t key = (key_t)(0x5c000000 | (getpid() & 0xffffff));
	int id = shmget(key, SIZE, IPC_CREAT | IPC_EXCL | 0640);
	if (id < 0)
		fail("shmget: %m");
	volatile uint32_t *rw = shmat(id, NULL, 0);
	volatile uint32_t *ro = shmat(id, NULL, SHM_RDONLY);
	volatile uint32_t *rx = shmat(id, NULL, SHM_RDONLY | SHM_EXEC);
	if (rw == (void *)-1 || ro == (void *)-1 || rx == (void *)-1)
		fail("shmat: %m");
	for (size_t i = 0; i < WORDS; i++)
		if (patterned(i))
			rw[i] = pattern(i);
	if (mprotect((void *)((char *)rw + 2 * PAGE), PAGE, PROT_READ) != 0)
		fail("mprotect: %m");
	if (rmid && shmctl(id, IPC_RMID, NULL) != 0)
		fail("shmctl IPC_RMID: %m");
	if (drop)
		become_nobody();
	setvbuf(stdout, NULL, _IOLBF, 0);
	pid_t child = 0;
	if (forked) {
		child = fork();
		if (child < 0)
			fail("fork: %m");
		if (child == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (;;) {
				check("child's read-only", ro);
				rw[2]++;
				pause_ms(20);
			}
		}
	}
	printf("ready shmid=%d key=%u child=%d\n", id, (unsigned)key, (int)child);
	uint32_t seen = 0;
	unsigned long since = 0;
	for (unsigned long tick = 0;; tick++) {
		check("read-write", rw);
		check("read-only", ro);
		check("executable", rx);
		rw[1] = (uint32_t)tick;
		if (ro[1] != (uint32_t)tick)
			fail("the read-only attachment does not see the tick written");
		if (forked) {
			if (rw[2] != seen)
				seen = rw[2], since = tick;
			else if (tick - since > 500)
				fail("the child's count stays at %u", seen);
		}
		struct timespec m;
		clock_gettime(CLOCK_MONOTONIC, &m);
		printf("tick %lu mono_ns=%lld pid=%d ext=%u ok\n", tick, m.tv_sec * 1000000000LL + m.tv_nsec, getpid(), ro[0]);
		pause_ms(20);
	}
}
