// mdwe: a checkpoint/restore subject that denies itself memory both
// writable and executable (PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN), as
// systemd's MemoryDenyWriteExecute= may. It prints "ready", then every
// PERIOD_MS checks that the flag is still set and that a mapping both
// writable and executable is still refused, and prints "tick N pid=P ok",
// or "FAIL ..." and exits 1.
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "subject.h"

// From include/uapi/linux/prctl.h, which this glibc's headers predate.
#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_GET_MDWE 66
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif

#define PERIOD_MS 50

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0))
		fail("PR_SET_MDWE: %s", strerror(errno));
	printf("ready\n");
	for (long n = 0;; n++) {
		int flags = prctl(PR_GET_MDWE, 0, 0, 0, 0);
		if (flags != PR_MDWE_REFUSE_EXEC_GAIN)
			fail("PR_GET_MDWE says %d, want %d", flags, PR_MDWE_REFUSE_EXEC_GAIN);
		void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p != MAP_FAILED)
			fail("a mapping both writable and executable was made");
		if (errno != EACCES)
			fail("mmap: %s, want EACCES", strerror(errno));
		printf("tick %ld pid=%d ok\n", n, getpid());
		usleep(PERIOD_MS * 1000);
	}
}
