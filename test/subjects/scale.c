// scale: a checkpoint/restore benchmark subject with many of one thing.
//
// Usage: scale threads N | scale maps N | scale conns N PORT | scale epoll N.
// With threads
// it starts N threads that each count in a slot of their own; with maps it
// makes N private anonymous mappings of two pages, the first written with
// its index, the second made read-only (so that no two merge: 2N VMAs);
// with conns it opens N TCP connections to 127.0.0.1:PORT (raising its
// RLIMIT_NOFILE to its hard limit), each sending its index once
// connected, and checks every tick that each is still connected to that
// port and none was closed by its peer; with epoll it registers N
// eventfds, the i-th counting i+1, in one epoll with i as data, and
// checks every tick that the epoll reports each once with its data. It
// prints
//   ready setup_ns=T
// T being what making them took here, the baseline of a restore, then
// every PERIOD_MS checks them all and prints "tick N ok", or "FAIL ..."
// and exits 1.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 100

static long n;
static volatile uint64_t *counts;
static char **maps;
static int *conns;
static int port;
static int ep;

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

// raise_nofile raises RLIMIT_NOFILE to its hard limit, for N descriptors.
static void raise_nofile(void) {
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		fail("getrlimit: %m");
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		fail("setrlimit: %m");
}

static void setup_conns(void) {
	raise_nofile();
	conns = calloc(n, sizeof(*conns));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	for (long i = 0; i < n; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
			fail("connection %ld: %m", i);
		if (write(fd, &i, sizeof i) != sizeof i)
			fail("write to connection %ld: %m", i);
		conns[i] = fd;
	}
}

static void check_conns(void) {
	for (long i = 0; i < n; i++) {
		struct sockaddr_in sa;
		socklen_t len = sizeof sa;
		char c;
		if (getpeername(conns[i], (struct sockaddr *)&sa, &len) != 0 || ntohs(sa.sin_port) != port)
			fail("connection %ld: not connected to %d: %m", i, port);
		if (recv(conns[i], &c, 1, MSG_DONTWAIT | MSG_PEEK) == 0)
			fail("connection %ld: closed by its peer", i);
	}
}

static void setup_epoll(void) {
	raise_nofile();
	ep = epoll_create1(0);
	if (ep < 0)
		fail("epoll_create1: %m");
	for (long i = 0; i < n; i++) {
		int fd = eventfd(i + 1, 0);
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
		if (fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
			fail("eventfd %ld: %m", i);
	}
}

static void check_epoll(void) {
	static struct epoll_event *evs;
	static char *seen;
	if (!evs) {
		evs = calloc(n, sizeof(*evs));
		seen = malloc(n);
	}
	memset(seen, 0, n);
	int got = epoll_wait(ep, evs, n, 1000);
	if (got != n)
		fail("epoll_wait reported %d of %ld eventfds", got, n);
	for (int i = 0; i < got; i++) {
		uint64_t d = evs[i].data.u64;
		if (d >= (uint64_t)n || seen[d]++)
			fail("epoll_wait reported data %llu", (unsigned long long)d);
	}
}

int main(int argc, char **argv) {
	if (argc < 3)
		fail("usage: scale threads|maps|epoll N | scale conns N PORT");
	n = strtol(argv[2], NULL, 10);
	int threads = strcmp(argv[1], "threads") == 0, conn = strcmp(argv[1], "conns") == 0, epoll = strcmp(argv[1], "epoll") == 0;
	if (conn && argc == 4)
		port = atoi(argv[3]);
	else if (argc != 3)
		fail("usage: scale threads|maps|epoll N | scale conns N PORT");
	uint64_t start = now_ns();
	if (threads)
		setup_threads();
	else if (conn)
		setup_conns();
	else if (epoll)
		setup_epoll();
	else
		setup_maps();
	printf("ready setup_ns=%llu\n", (unsigned long long)(now_ns() - start));
	fflush(stdout);
	for (long tick = 1;; tick++) {
		usleep(PERIOD_MS * 1000);
		if (threads)
			check_threads();
		else if (conn)
			check_conns();
		else if (epoll)
			check_epoll();
		else
			check_maps();
		printf("tick %ld ok\n", tick);
		fflush(stdout);
	}
}
