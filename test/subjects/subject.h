// subject.h: what the C subjects share.
#ifndef CRYO_SUBJECT_H
#define CRYO_SUBJECT_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

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

#endif
