// The C test subject: glibc registers rseq for every thread, which a Go
// program does not. It counts on stdout every millisecond, with two more
// threads sleeping in 1 ms naps, and prints "usr1" after a SIGUSR1.
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile sig_atomic_t usr1;
// started holds main back until both threads run, rseq registered.
static pthread_barrier_t started;

static void on_usr1(int sig) { (void)sig; usr1 = 1; }

// nap sleeps 1 ms. Any error but EINTR ends the subject: a tracer that
// restores registers wrongly leaks -ERESTART_RESTARTBLOCK (errno 516) here.
static void nap(void) {
	struct timespec ts = {0, 1000000};
	if (nanosleep(&ts, NULL) != 0 && errno != EINTR) {
		perror("nanosleep");
		exit(3);
	}
}

static void *sleeper(void *arg) {
	(void)arg;
	pthread_barrier_wait(&started);
	for (;;)
		nap();
}

int main(void) {
	struct sigaction sa = {.sa_handler = on_usr1};
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		return 2;
	pthread_barrier_init(&started, NULL, 3);
	for (int i = 0; i < 2; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, sleeper, NULL) != 0)
			return 2;
	}
	pthread_barrier_wait(&started);
	for (long n = 0;; n++) {
		if (usr1) {
			usr1 = 0;
			puts("usr1");
		}
		printf("%ld\n", n);
		fflush(stdout);
		nap();
	}
}
