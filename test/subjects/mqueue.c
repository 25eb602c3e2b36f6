// mqueue: a checkpoint/restore subject holding a POSIX message queue
// (mq_open) with a message in it, which a dump refuses.
//
// Usage: mqueue NAME [unlink]; with unlink it removes the queue's name
// once open. It prints
//   ready mq=FD
// then every PERIOD_MS "tick N pid=P ok" while the queue holds its
// message, or "FAIL ..." and exits 1.
#include <fcntl.h>
#include <mqueue.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20

int main(int argc, char **argv) {
	if (argc < 2)
		fail("usage: mqueue NAME [unlink]");
	struct mq_attr attr = {.mq_maxmsg = 4, .mq_msgsize = 64};
	mqd_t q = mq_open(argv[1], O_CREAT | O_EXCL | O_RDWR, 0600, &attr);
	if (q < 0)
		fail("mq_open %s: %s", argv[1], strerror(errno));
	if (argc > 2 && mq_unlink(argv[1]) != 0)
		fail("mq_unlink %s: %s", argv[1], strerror(errno));
	if (mq_send(q, "hello", 5, 1) != 0)
		fail("mq_send: %s", strerror(errno));
	printf("ready mq=%d\n", (int)q);
	fflush(stdout);
	for (long tick = 1;; tick++) {
		struct timespec ts = {0, PERIOD_MS * 1000000L};
		nanosleep(&ts, NULL);
		if (mq_getattr(q, &attr) != 0 || attr.mq_curmsgs != 1)
			fail("the queue holds %ld messages, want 1", attr.mq_curmsgs);
		printf("tick %ld pid=%d ok\n", tick, getpid());
		fflush(stdout);
	}
}
