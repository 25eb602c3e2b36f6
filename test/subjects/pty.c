// pty: a checkpoint/restore subject holding two pseudo-terminals, both
// ends of each, whose settings, window sizes and queued data a restore
// must keep. Every PERIOD_MS it checks them, without reading anything,
// and prints
//   tick N pid=P ok
// or "FAIL ..." and exits 1. On SIGUSR1 it reads every queued byte,
// compares it with what was written, sends data both ways through both
// pairs (and through /dev/tty) and prints "flow ok" or FAIL; the ticks
// go on, without the queue counts.
//
// It runs as a session leader without a controlling terminal (the test
// harness's setsid) and holds:
//   cm, cs  a canonical pair whose slave, opened without O_NOCTTY, is its
//           controlling terminal; winsize 33x101; the slave's input holds
//           two lines and a partial one (CANON_IN), echoed into the
//           master's (CANON_ECHO)
//   tty     /dev/tty
//   rm, rs  a raw pair (cfmakeraw, VMIN 0, O_NONBLOCK on the master),
//           winsize 24x80 with pixels, holding RAW_IN for the slave and
//           RAW_OUT for the master
// and prints "ready cm=FD cs=FD tty=FD rm=FD rs=FD".
//
// Usage: pty [child|session-child|ctty-child|shuffled]. With child, it forks a
// child that makes a session of its own (no controlling terminal) and
// sleeps holding the descriptors it inherited; with session-child, one
// that stays in the session, whose controlling terminal is the canonical
// pair; with ctty-child, one that makes a session whose controlling
// terminal is the raw pair, opened and closed. The ready line adds
// child=PID (0 without a child). With shuffled, it forks none and moves
// the descriptors so that /dev/tty comes first and each slave below its
// master, holes between them, each master close-on-exec; it locks the
// raw pair and makes its slave exclusive, and checks all of it.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20
#define CANON_IN "line one\nline two\npartial"
#define CANON_LINES "line one\nline two\n"
#define CANON_ECHO "line one\r\nline two\r\npartial"
// Bytes the line discipline would act on, were it not raw.
#define RAW_IN "raw\r\x7f\x03\x15in\n"
#define RAW_OUT "raw\nout\x04"

static int cm, cs, tty, rm, rs;
static struct termios canon_tio, raw_tio;
static volatile sig_atomic_t flow;
static int shuffled;

static int open_slave(int m, int flags) {
	if (grantpt(m) != 0 || unlockpt(m) != 0)
		fail("unlock pty: %s", strerror(errno));
	int s = open(ptsname(m), O_RDWR | flags);
	if (s < 0)
		fail("open %s: %s", ptsname(m), strerror(errno));
	return s;
}

static void xwrite(int fd, const char *s, size_t n) {
	if (write(fd, s, n) != (ssize_t)n)
		fail("write fd %d: %s", fd, strerror(errno));
}

static int queued(int fd) {
	int n = -1;
	if (ioctl(fd, FIONREAD, &n) != 0)
		fail("FIONREAD fd %d: %s", fd, strerror(errno));
	return n;
}

// settle waits until fd counts n bytes to read: a write reaches the other
// side through a kernel worker.
static void settle(int fd, int n) {
	for (int i = 0; i < 1000 && queued(fd) != n; i++)
		usleep(1000);
	if (queued(fd) != n)
		fail("fd %d holds %d bytes, want %d", fd, queued(fd), n);
}

static void check_pair(const char *name, int m, int s, const struct termios *want, int rows, int cols, int xpix) {
	struct termios t;
	if (tcgetattr(s, &t) != 0)
		fail("tcgetattr %s: %s", name, strerror(errno));
	if (t.c_iflag != want->c_iflag || t.c_oflag != want->c_oflag || t.c_cflag != want->c_cflag ||
	    t.c_lflag != want->c_lflag || memcmp(t.c_cc, want->c_cc, sizeof t.c_cc) != 0)
		fail("%s: termios iflag %#o oflag %#o cflag %#o lflag %#o, want %#o %#o %#o %#o", name, t.c_iflag,
		     t.c_oflag, t.c_cflag, t.c_lflag, want->c_iflag, want->c_oflag, want->c_cflag, want->c_lflag);
	struct winsize ws;
	if (ioctl(m, TIOCGWINSZ, &ws) != 0 || ws.ws_row != rows || ws.ws_col != cols || ws.ws_xpixel != xpix)
		fail("%s: winsize %dx%d (%d px), want %dx%d (%d px)", name, ws.ws_row, ws.ws_col, ws.ws_xpixel, rows,
		     cols, xpix);
	// The master's slave is the slave held, whatever its number now.
	struct stat a, b;
	if (stat(ptsname(m), &a) != 0 || fstat(s, &b) != 0 || a.st_rdev != b.st_rdev)
		fail("%s: the master's slave %s is not the slave held", name, ptsname(m));
}

static void check_shuffled(void) {
	int excl = 0, locked = 0;
	if (ioctl(rs, TIOCGEXCL, &excl) != 0 || ioctl(rm, TIOCGPTLCK, &locked) != 0)
		fail("TIOCGEXCL, TIOCGPTLCK: %s", strerror(errno));
	if (!excl || !locked)
		fail("raw slave exclusive %d, raw pair locked %d, want both", excl, locked);
	if (!(fcntl(cm, F_GETFD) & FD_CLOEXEC) || !(fcntl(rm, F_GETFD) & FD_CLOEXEC) || (fcntl(cs, F_GETFD) & FD_CLOEXEC))
		fail("close-on-exec: masters %d %d, canonical slave %d, want 1 1 0", fcntl(cm, F_GETFD), fcntl(rm, F_GETFD),
		     fcntl(cs, F_GETFD));
}

static void check(void) {
	if (shuffled)
		check_shuffled();
	check_pair("canonical pair", cm, cs, &canon_tio, 33, 101, 0);
	check_pair("raw pair", rm, rs, &raw_tio, 24, 80, 640);
	if (getsid(0) != getpid())
		fail("session %d, want its own", getsid(0));
	if (tcgetpgrp(cs) != getpgrp())
		fail("foreground group of the controlling terminal %d, want %d", tcgetpgrp(cs), getpgrp());
	if ((fcntl(rm, F_GETFL) & O_NONBLOCK) == 0)
		fail("raw master lost O_NONBLOCK");
	if (flow)
		return;
	if (queued(cs) != (int)strlen(CANON_LINES) || queued(cm) != (int)strlen(CANON_ECHO))
		fail("canonical pair holds %d and %d bytes, want %zu and %zu", queued(cs), queued(cm),
		     strlen(CANON_LINES), strlen(CANON_ECHO));
	if (queued(rs) != (int)strlen(RAW_IN) || queued(rm) != (int)strlen(RAW_OUT))
		fail("raw pair holds %d and %d bytes, want %zu and %zu", queued(rs), queued(rm), strlen(RAW_IN),
		     strlen(RAW_OUT));
}

static void expect(int fd, const char *what, const char *want) {
	char buf[256];
	size_t n = strlen(want);
	ssize_t got = read(fd, buf, sizeof buf);
	if (got != (ssize_t)n || memcmp(buf, want, n) != 0)
		fail("%s: read %zd bytes \"%.*s\", want \"%s\"", what, got, got > 0 ? (int)got : 0, buf, want);
}

// drain reads what each end holds and sends data both ways.
static void drain(void) {
	expect(cs, "canonical slave, line 1", "line one\n");
	expect(cs, "canonical slave, line 2", "line two\n");
	expect(cm, "canonical master", CANON_ECHO);
	xwrite(cm, " end\n", 5); // ends the partial line
	expect(cs, "canonical slave, line 3", "partial end\n");
	expect(cm, "canonical master, echo", " end\r\n");
	xwrite(tty, "via tty\n", 8);
	expect(cm, "canonical master, from /dev/tty", "via tty\r\n");
	expect(rs, "raw slave", RAW_IN);
	expect(rm, "raw master", RAW_OUT);
	xwrite(rm, "in2", 3);
	settle(rs, 3);
	expect(rs, "raw slave, new data", "in2");
	xwrite(rs, "out2\n", 5);
	settle(rm, 5);
	expect(rm, "raw master, new data", "out2\n");
	printf("flow ok\n");
	fflush(stdout);
}

// move moves descriptor fd to number to, with flags (O_CLOEXEC).
static int move(int fd, int to, int flags) {
	if (dup3(fd, to, flags) != to || close(fd) != 0)
		fail("move fd %d to %d: %s", fd, to, strerror(errno));
	return to;
}

static void shuffle(void) {
	int t[5] = {cm, cs, tty, rm, rs};
	for (int i = 0; i < 5; i++)
		t[i] = move(t[i], 30 + i, 0);
	tty = move(t[2], 3, 0);
	cs = move(t[1], 5, 0);
	cm = move(t[0], 9, O_CLOEXEC);
	rs = move(t[4], 12, 0);
	rm = move(t[3], 15, O_CLOEXEC);
	int lock = 1;
	if (ioctl(rs, TIOCEXCL) != 0 || ioctl(rm, TIOCSPTLCK, &lock) != 0)
		fail("TIOCEXCL, TIOCSPTLCK: %s", strerror(errno));
}

static void on_usr1(int sig) {
	(void)sig;
	flow = 1;
}

int main(int argc, char **argv) {
	cm = posix_openpt(O_RDWR);
	if (cm < 0)
		fail("posix_openpt: %s", strerror(errno));
	cs = open_slave(cm, 0); // a session leader's first terminal: its controlling one
	tty = open("/dev/tty", O_RDWR);
	if (tty < 0)
		fail("open /dev/tty: %s", strerror(errno));
	struct winsize ws = {.ws_row = 33, .ws_col = 101};
	if (ioctl(cs, TIOCSWINSZ, &ws) != 0 || tcgetattr(cs, &canon_tio) != 0)
		fail("set up the canonical pair: %s", strerror(errno));
	xwrite(cm, CANON_IN, strlen(CANON_IN));
	settle(cm, strlen(CANON_ECHO));
	settle(cs, strlen(CANON_LINES));

	rm = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK);
	if (rm < 0)
		fail("posix_openpt: %s", strerror(errno));
	rs = open_slave(rm, O_NOCTTY);
	if (tcgetattr(rs, &raw_tio) != 0)
		fail("tcgetattr: %s", strerror(errno));
	cfmakeraw(&raw_tio);
	raw_tio.c_cc[VMIN] = 0;
	raw_tio.c_cc[VTIME] = 0;
	struct winsize rws = {.ws_row = 24, .ws_col = 80, .ws_xpixel = 640, .ws_ypixel = 480};
	if (tcsetattr(rs, TCSANOW, &raw_tio) != 0 || tcgetattr(rs, &raw_tio) != 0 || ioctl(rs, TIOCSWINSZ, &rws) != 0)
		fail("set up the raw pair: %s", strerror(errno));
	xwrite(rm, RAW_IN, strlen(RAW_IN));
	xwrite(rs, RAW_OUT, strlen(RAW_OUT));
	settle(rs, strlen(RAW_IN));
	settle(rm, strlen(RAW_OUT));

	shuffled = argc > 1 && !strcmp(argv[1], "shuffled");
	if (shuffled)
		shuffle();
	signal(SIGUSR1, on_usr1);
	check();
	pid_t child = 0;
	if (argc > 1 && !shuffled) {
		child = fork();
		if (child < 0)
			fail("fork: %s", strerror(errno));
		if (child == 0) {
			if (strcmp(argv[1], "session-child") && setsid() < 0)
				_exit(1);
			if (!strcmp(argv[1], "ctty-child")) {
				int fd = open(ptsname(rm), O_RDWR);
				if (fd < 0 || close(fd) != 0)
					_exit(1);
			}
			for (;;)
				pause();
		}
	}
	printf("ready cm=%d cs=%d tty=%d rm=%d rs=%d child=%d\n", cm, cs, tty, rm, rs, child);
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
