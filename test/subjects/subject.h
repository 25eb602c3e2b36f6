// subject.h: what the C subjects share.
#ifndef CRYO_SUBJECT_H
#define CRYO_SUBJECT_H

#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// fail prints "FAIL <message>", which ends a test that watches the
// subject, and exits.
static void fail(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	printf("FAIL ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	exit(1);
}

// nap_ms sleeps ms milliseconds, the whole of them through signals
// caught.
static inline void nap_ms(long ms) {
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

// become_nobody gives up root for good: the process runs as nobody
// (uid and gid 65534, no supplementary groups; as root, setgid and
// setuid set the real, effective and saved ids alike).
static inline void become_nobody(void) {
	if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
		fail("become nobody: %s", strerror(errno));
}

#endif
