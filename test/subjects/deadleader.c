// deadleader: a checkpoint/restore subject whose main thread exits
// (pthread_exit) while two threads run on: the thread group leader is a
// zombie as long as the process lives. Before it exits, the main thread
// fills a heap buffer with a pattern, opens a file at an offset, and
// makes a pipe and a socket pair with bytes queued, which the threads
// check. The ticker prints
//   ready file=PATH
// once the leader has exited, then "tick N pid=P beats=B ok" every
// 3*PERIOD_MS, where B is how often the other thread has beaten; or
// "FAIL ..." when the buffer or the file's offset is wrong, the beater
// stopped for STALL_MS, or the leader is not a zombie. With a second
// argument "fork", the ticker first forks a child whose own main thread
// exits while a thread of its own sleeps on: a tree of two processes
// whose leaders have exited; the ready line names it (child=PID). With
// "fork-pdeath", the child's thread that runs on has a parent-death signal
// (SIGTERM).
// SIGUSR1 makes both threads exit (pthread_exit), the ticker after
// printing "bye": the process ends with the leader's exit status, 0.
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20
#define BUF_SIZE (1 << 20)
#define OFFSET 4242
// STALL_MS is how long the beater may go without beating.
#define STALL_MS 2000

static unsigned char *buf;
static int fd;
// pipefd[0] and sock[0] each hold unread bytes the threads check.
static int pipefd[2], sock[2];
static volatile long beats;
static volatile sig_atomic_t quit;

static void on_usr1(int sig) {
	(void)sig;
	quit = 1;
}

static char pattern(long i) { return (char)(i * 7 + 3); }

// beater beats on its own, so that a thread that is not the ticker is
// seen running after a restore.
static void *beater(void *arg) {
	(void)arg;
	while (!quit) {
		__atomic_add_fetch(&beats, 1, __ATOMIC_RELAXED);
		usleep(PERIOD_MS * 1000 / 2);
	}
	return NULL;
}

static long long now_ms(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

static int leader_dead(void) {
	char path[64], b[512];
	snprintf(path, sizeof path, "/proc/%d/stat", getpid());
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(b, 1, sizeof b - 1, f);
	fclose(f);
	b[n] = 0;
	char *p = strrchr(b, ')');
	return p && p[1] == ' ' && p[2] == 'Z';
}

// forks is 1 with "fork", 2 with "fork-pdeath".
static int forks;

// pdeath_set tells the child's main thread that its sleeper has set its
// parent-death signal, if it was to.
static volatile int pdeath_set;

static void *sleeper(void *arg) {
	(void)arg;
	if (forks == 2 && prctl(PR_SET_PDEATHSIG, SIGTERM))
		_exit(1);
	pdeath_set = 1;
	for (;;)
		pause();
	return NULL;
}

// child forks a process whose main thread exits while another sleeps.
static pid_t child(void) {
	pid_t pid = fork();
	if (pid < 0)
		fail("fork");
	if (pid == 0) {
		pthread_t t;
		if (pthread_create(&t, NULL, sleeper, NULL))
			_exit(1);
		while (!pdeath_set)
			usleep(1000);
		pthread_exit(NULL);
	}
	return pid;
}

static const char *path;

static void *ticker(void *arg) {
	(void)arg;
	while (!leader_dead())
		usleep(1000);
	// Forked only once the leader has exited: its pthread_exit loads the
	// unwinder (libgcc_s), and a child forked in the middle of that would
	// find it half loaded and abort in its own pthread_exit.
	pid_t kid = forks ? child() : 0;
	printf("ready file=%s child=%d\n", path, (int)kid);
	fflush(stdout);
	long last = -1;
	long long changed = now_ms();
	for (long n = 0; !quit; n++) {
		for (long i = 0; i < BUF_SIZE; i += 4096)
			if (buf[i] != (unsigned char)pattern(i))
				fail("buffer byte %ld is %d, want %d", i, buf[i], (unsigned char)pattern(i));
		off_t off = lseek(fd, 0, SEEK_CUR);
		if (off != OFFSET)
			fail("file offset %ld, want %d", (long)off, OFFSET);
		int queued;
		if (ioctl(pipefd[0], FIONREAD, &queued) || queued != 4)
			fail("pipe holds %d bytes, want 4", queued);
		if (ioctl(sock[0], FIONREAD, &queued) || queued != 5)
			fail("socket holds %d bytes, want 5", queued);
		long b = __atomic_load_n(&beats, __ATOMIC_RELAXED);
		if (b != last)
			last = b, changed = now_ms();
		else if (now_ms() - changed > STALL_MS)
			fail("the beater stopped at %ld", b);
		if (!leader_dead())
			fail("the leader is not a zombie");
		printf("tick %ld pid=%d beats=%ld ok\n", n, getpid(), b);
		fflush(stdout);
		usleep(PERIOD_MS * 1000 * 3);
	}
	printf("bye\n");
	fflush(stdout);
	return NULL;
}

int main(int argc, char **argv) {
	if (argc < 2 || argc > 3)
		fail("usage: deadleader FILE [fork|fork-pdeath]");
	path = argv[1];
	if (argc == 3)
		forks = strcmp(argv[2], "fork-pdeath") == 0 ? 2 : strcmp(argv[2], "fork") == 0;
	signal(SIGUSR1, on_usr1);
	buf = malloc(BUF_SIZE);
	if (!buf)
		fail("malloc");
	for (long i = 0; i < BUF_SIZE; i++)
		buf[i] = pattern(i);
	fd = open(argv[1], O_RDWR | O_CREAT, 0600);
	if (fd < 0 || lseek(fd, OFFSET, SEEK_SET) != OFFSET)
		fail("open %s", argv[1]);
	if (pipe(pipefd) || write(pipefd[1], "pipe", 4) != 4)
		fail("pipe");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sock) || write(sock[1], "sock!", 5) != 5)
		fail("socketpair");
	pthread_t t;
	if (pthread_create(&t, NULL, beater, NULL) || pthread_create(&t, NULL, ticker, NULL))
		fail("pthread_create");
	pthread_exit(NULL);
}
