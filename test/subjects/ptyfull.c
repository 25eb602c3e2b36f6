// ptyfull: a checkpoint/restore subject holding two pseudo-terminals with
// more queued than their line disciplines hold (4095 bytes), the rest
// waiting, unprocessed, in the terminals' own buffers. Every PERIOD_MS it
// checks them, without reading anything, and prints
//   tick N pid=P ok
// or "FAIL ..." and exits 1. On SIGUSR1 it reads every queued byte,
// compares it with what was written, and prints "flow ok" or FAIL; the
// ticks go on, without the queue counts.
//
// It holds, opened without a controlling terminal:
//   rm, rs  a raw pair (cfmakeraw, VMIN 0), O_NONBLOCK on the master (as
//           a terminal multiplexer's), each way filled with a pattern
//           until the next write would block: a program writing while
//           its terminal's reader sleeps (or is frozen by a dump)
//   cm, cs  a canonical pair with the default settings (echo, CR to NL,
//           NL to CR NL), LINES lines of 100 bytes written to its master,
//           every other one ended by a CR: the line discipline holds 40
//           lines and a part of the next, echoed; the rest waits, to be
//           mapped and echoed once, when the reader makes room
// and prints "ready rm=FD rs=FD cm=FD cs=FD in=N out=M", N and M the
// bytes queued each way in the raw pair.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20
#define HELD 4095 // what a line discipline holds
#define LINE 100
#define LINES 60
#define HELD_LINES (HELD / LINE)

static int rm, rs, cm, cs, nin, nout;
static struct termios raw_tio, canon_tio;
static volatile sig_atomic_t flow;
static char lines[LINES * LINE], echo[LINES * (LINE + 1)];

static int queued(int fd) {
	int n = -1;
	if (ioctl(fd, FIONREAD, &n) != 0)
		fail("FIONREAD fd %d: %s", fd, strerror(errno));
	return n;
}

static void set_nonblock(int fd, int on) {
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) != 0)
		fail("fcntl fd %d: %s", fd, strerror(errno));
}

static char pattern(int i, int salt) { return 'a' + (i + salt) % 26; }

// fill writes the pattern to fd, 512 bytes at a time, until a write would
// block, and returns how much it wrote.
static int fill(int fd, int salt) {
	char buf[512];
	int n = 0;
	set_nonblock(fd, 1);
	for (;;) {
		for (size_t i = 0; i < sizeof buf; i++)
			buf[i] = pattern(n + i, salt);
		ssize_t k = write(fd, buf, sizeof buf);
		if (k < 0 && errno == EAGAIN) {
			// The line discipline takes in what came before by a
			// kernel worker: full only when still full a moment on.
			usleep(20000);
			k = write(fd, buf, sizeof buf);
			if (k < 0 && errno == EAGAIN)
				break;
		}
		if (k < 0)
			fail("fill fd %d: %s", fd, strerror(errno));
		n += k;
	}
	return n;
}

// readall reads fd until it has had nothing for a moment.
static int readall(int fd, char *buf, int size) {
	int n = 0, idle = 0, blocking = !(fcntl(fd, F_GETFL) & O_NONBLOCK);
	if (blocking)
		set_nonblock(fd, 1);
	while (idle < 10) {
		ssize_t k = read(fd, buf + n, size - n);
		if (k < 0 && errno != EAGAIN)
			fail("read fd %d: %s", fd, strerror(errno));
		if (k <= 0) {
			idle++;
			usleep(10000);
			continue;
		}
		idle = 0;
		n += k;
		if (n == size)
			fail("fd %d holds more than %d bytes", fd, size);
	}
	if (blocking)
		set_nonblock(fd, 0);
	return n;
}

static void check_tio(const char *name, int s, const struct termios *want) {
	struct termios t;
	if (tcgetattr(s, &t) != 0)
		fail("tcgetattr %s: %s", name, strerror(errno));
	if (t.c_iflag != want->c_iflag || t.c_oflag != want->c_oflag || t.c_lflag != want->c_lflag ||
	    memcmp(t.c_cc, want->c_cc, sizeof t.c_cc) != 0)
		fail("%s: termios iflag %#o oflag %#o lflag %#o, want %#o %#o %#o", name, t.c_iflag, t.c_oflag,
		     t.c_lflag, want->c_iflag, want->c_oflag, want->c_lflag);
}

static void check(void) {
	check_tio("raw pair", rs, &raw_tio);
	check_tio("canonical pair", cs, &canon_tio);
	if (!(fcntl(rm, F_GETFL) & O_NONBLOCK) || (fcntl(rs, F_GETFL) & O_NONBLOCK))
		fail("raw pair: O_NONBLOCK master %d slave %d, want 1 0", !!(fcntl(rm, F_GETFL) & O_NONBLOCK),
		     !!(fcntl(rs, F_GETFL) & O_NONBLOCK));
	if (flow)
		return;
	// Full line disciplines, the canonical slave's counting its lines.
	if (queued(rs) != HELD || queued(rm) != HELD || queued(cs) != HELD_LINES * LINE || queued(cm) != HELD)
		fail("queued: raw slave %d master %d, canonical slave %d master %d, want %d %d %d %d", queued(rs),
		     queued(rm), queued(cs), queued(cm), HELD, HELD, HELD_LINES * LINE, HELD);
}

static void expect(const char *what, const char *got, int n, const char *want, int wn) {
	if (n != wn || memcmp(got, want, n) != 0) {
		int i = 0;
		while (i < n && i < wn && got[i] == want[i])
			i++;
		fail("%s: read %d bytes, want %d, first difference at %d", what, n, wn, i);
	}
}

static void drain(void) {
	static char buf[1 << 16], want[1 << 16];
	for (int i = 0; i < nin; i++)
		want[i] = pattern(i, 0);
	expect("raw slave", buf, readall(rs, buf, sizeof buf), want, nin);
	for (int i = 0; i < nout; i++)
		want[i] = pattern(i, 7);
	expect("raw master", buf, readall(rm, buf, sizeof buf), want, nout);
	memcpy(want, lines, sizeof lines);
	for (int i = 0; i < LINES; i++)
		want[i * LINE + LINE - 1] = '\n'; // CR mapped
	expect("canonical slave", buf, readall(cs, buf, sizeof buf), want, sizeof lines);
	expect("canonical master (the echo, once)", buf, readall(cm, buf, sizeof buf), echo, sizeof echo);
	printf("flow ok\n");
	fflush(stdout);
}

static int open_slave(int m) {
	if (grantpt(m) != 0 || unlockpt(m) != 0)
		fail("unlock pty: %s", strerror(errno));
	int s = open(ptsname(m), O_RDWR | O_NOCTTY);
	if (s < 0)
		fail("open %s: %s", ptsname(m), strerror(errno));
	return s;
}

static void on_usr1(int sig) {
	(void)sig;
	flow = 1;
}

int main(void) {
	rm = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK);
	cm = posix_openpt(O_RDWR | O_NOCTTY);
	if (rm < 0 || cm < 0)
		fail("posix_openpt: %s", strerror(errno));
	rs = open_slave(rm);
	cs = open_slave(cm);
	if (tcgetattr(rs, &raw_tio) != 0)
		fail("tcgetattr: %s", strerror(errno));
	cfmakeraw(&raw_tio);
	raw_tio.c_cc[VMIN] = 0;
	raw_tio.c_cc[VTIME] = 0;
	if (tcsetattr(rs, TCSANOW, &raw_tio) != 0 || tcgetattr(rs, &raw_tio) != 0 || tcgetattr(cs, &canon_tio) != 0)
		fail("set up the pairs: %s", strerror(errno));
	nin = fill(rm, 0);
	set_nonblock(rm, 1);
	nout = fill(rs, 7);
	set_nonblock(rs, 0);

	char *e = echo;
	for (int i = 0; i < LINES; i++) {
		char *l = lines + i * LINE;
		for (int j = 0; j < LINE - 1; j++)
			l[j] = *e++ = pattern(j, i);
		l[LINE - 1] = i % 2 ? '\r' : '\n';
		*e++ = '\r';
		*e++ = '\n';
	}
	if (write(cm, lines, sizeof lines) != (ssize_t)sizeof lines)
		fail("write the lines: %s", strerror(errno));
	for (int i = 0; i < 1000 && (queued(cs) != HELD_LINES * LINE || queued(cm) != HELD); i++)
		usleep(1000);

	signal(SIGUSR1, on_usr1);
	check();
	printf("ready rm=%d rs=%d cm=%d cs=%d in=%d out=%d\n", rm, rs, cm, cs, nin, nout);
	fflush(stdout);
	int drained = 0;
	for (long n = 0;; n++) {
		struct timespec ts = {0, PERIOD_MS * 1000000L};
		nanosleep(&ts, NULL);
		if (flow && !drained) {
			drain();
			drained = 1;
		}
		check();
		printf("tick %ld pid=%d ok\n", n, getpid());
		fflush(stdout);
	}
}
