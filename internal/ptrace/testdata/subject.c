// The C test subject: glibc registers rseq for every thread, which a Go
// program does not. It counts on stdout every millisecond, with two more
// threads sleeping in 1 ms naps, and prints "usr1" after a SIGUSR1.
// With the argument "strict", the sleepers nap 200 ms, so that a tracer
// almost always stops them inside nanosleep, and no nap may fail, EINTR
// included: for a test that sends no signal, a failure means that a tracer
// resumed the subject with wrong registers.
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t usr1;
static int strict;
// started holds main back until both threads run, rseq registered.
static pthread_barrier_t started;

static void on_usr1(int sig) { (void)sig; usr1 = 1; }

// nap sleeps ms milliseconds. Any error but EINTR (any at all if strict)
// ends the subject: a tracer that restores registers wrongly leaks
// -ERESTART_RESTARTBLOCK (errno 516) or EINTR here.
static void nap(long ms) {
	struct timespec ts = {ms / 1000, ms % 1000 * 1000000};
	if (nanosleep(&ts, NULL) != 0 && (strict || errno != EINTR)) {
		perror("nanosleep");
		exit(3);
	}
}

static void *sleeper(void *arg) {
	(void)arg;
	pthread_barrier_wait(&started);
	for (;;)
		nap(strict ? 200 : 1);
}

int main(int argc, char **argv) {
	strict = argc > 1 && strcmp(argv[1], "strict") == 0;
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
		nap(1);
	}
}
