// sleeper: a checkpoint/restore subject whose threads sleep SLEEP_MS at a
// time, relatively, and check they wake when they would have: a sleep cut
// by a checkpoint goes on for what was left, on the process's monotonic
// clock (which a restore's time namespace carries on from the dump).
// Six sleepers: glibc's sleep(), which returns early when interrupted,
// nanosleep with one buffer as request and time left (as sleep() does),
// nanosleep with a buffer of its own for the time left,
// a relative clock_nanosleep, and select and ppoll with a timeout and no
// descriptor (which the kernel restarts with the time left written back
// into their timeout). Each prints
//   woke NAME ms=N
// after every sleep; the main thread prints "tick N pid=P ok" every
// PERIOD_MS, or "FAIL ..." when a sleep lasted OVERSLEEP_MS longer than
// asked, or ended early, and exits 1.
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20
#define SLEEP_MS 2000
#define OVERSLEEP_MS 400
// EARLY_MS is how much earlier than asked a sleep may end: the time left
// select() writes back is truncated to microseconds.
#define EARLY_MS 5

static long long now_ms(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

static void check(const char *name, long long start) {
	long long slept = now_ms() - start;
	if (slept > SLEEP_MS + OVERSLEEP_MS || slept < SLEEP_MS - EARLY_MS)
		fail("%s slept %lld ms, asked %d", name, slept, SLEEP_MS);
	printf("woke %s ms=%lld\n", name, slept);
	fflush(stdout);
}

static void *glibc_sleep(void *arg) {
	(void)arg;
	for (;;) {
		long long start = now_ms();
		sleep(SLEEP_MS / 1000);
		check("sleep", start);
	}
	return NULL;
}

static void *same_buffer(void *arg) {
	(void)arg;
	for (;;) {
		long long start = now_ms();
		struct timespec ts = {SLEEP_MS / 1000, (SLEEP_MS % 1000) * 1000000L};
		while (nanosleep(&ts, &ts) != 0)
			if (errno != EINTR)
				fail("nanosleep: %s", strerror(errno));
		check("same", start);
	}
	return NULL;
}

static void *own_buffer(void *arg) {
	(void)arg;
	for (;;) {
		long long start = now_ms();
		struct timespec req = {SLEEP_MS / 1000, (SLEEP_MS % 1000) * 1000000L}, rem;
		while (nanosleep(&req, &rem) != 0) {
			if (errno != EINTR)
				fail("nanosleep: %s", strerror(errno));
			req = rem;
		}
		check("own", start);
	}
	return NULL;
}

static void *clock_sleep(void *arg) {
	(void)arg;
	for (;;) {
		long long start = now_ms();
		struct timespec req = {SLEEP_MS / 1000, (SLEEP_MS % 1000) * 1000000L}, rem;
		int err;
		while ((err = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem)) != 0) {
			if (err != EINTR)
				fail("clock_nanosleep: %s", strerror(err));
			req = rem;
		}
		check("clock", start);
	}
	return NULL;
}

static void *select_sleep(void *arg) {
	(void)arg;
	for (;;) {
		long long start = now_ms();
		struct timeval tv = {SLEEP_MS / 1000, (SLEEP_MS % 1000) * 1000L};
		while (select(0, NULL, NULL, NULL, &tv) != 0)
			if (errno != EINTR)
				fail("select: %s", strerror(errno));
		check("select", start);
	}
	return NULL;
}

static void *ppoll_sleep(void *arg) {
	(void)arg;
	for (;;) {
		long long start = now_ms();
		struct timespec ts = {SLEEP_MS / 1000, (SLEEP_MS % 1000) * 1000000L};
		while (ppoll(NULL, 0, &ts, NULL) != 0)
			if (errno != EINTR)
				fail("ppoll: %s", strerror(errno));
		check("ppoll", start);
	}
	return NULL;
}

int main(void) {
	void *(*sleepers[])(void *) = {glibc_sleep, same_buffer, own_buffer, clock_sleep, select_sleep, ppoll_sleep};
	for (int i = 0; i < 6; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, sleepers[i], NULL) != 0)
			fail("pthread_create");
	}
	for (int tick = 0;; tick++) {
		printf("tick %d pid=%d ok\n", tick, getpid());
		fflush(stdout);
		struct timespec d = {0, PERIOD_MS * 1000000L};
		nanosleep(&d, NULL);
	}
}
