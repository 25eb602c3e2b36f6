// unixsk: a checkpoint/restore subject holding unix sockets of every
// shape, with data queued in them. It only holds them: the tests look at
// them from outside (pidfd_getfd), before the dump and after the
// restore, and make them talk.
//
// Usage: unixsk DIR [external PATH | stream-external PATH | rights |
// eventfd | epoll | relative | overbound | closed-client]. It
// holds
//   st0 st1     a stream socketpair: "abc" then "defg" queued to st1,
//               which has a peek offset (SO_PEEK_OFF) of PEEKOFF,
//               "ba" to st0; st0 with SO_PASSCRED, O_NONBLOCK and a send
//               buffer of SNDBUF
//   dg0 dg1     a datagram socketpair: "one" and "three" queued to
//               dg1, "x" to dg0; dg1 with a receive buffer of RCVBUF
//               and SO_TIMESTAMP (as rsyslog's log socket)
//   sp0 sp1     a seqpacket socketpair: "p1" and "p22" queued to sp1
//   lis         a stream socket bound to DIR/lis (mode 0640), listening
//               with a backlog of 5, which accepted
//   cli acc     a connection: "to-acc" queued to acc, "to-cli" to cli
//   pend1 pend2 and has two not accepted yet: pend1 unnamed, pend2 bound
//               to @cryo-unixsk-PID-pend
//   abs         a datagram socket bound to @cryo-unixsk-PID, with
//               SO_TIMESTAMPNS, to which are queued "from-named" sent by
//   named       a datagram socket bound to DIR/named, "from-anon" sent by
//               an unnamed socket closed since, and "from-absz" sent by
//   absz        a datagram socket bound to the abstract name
//               @cryo-unixsk-PID-z followed by a zero byte, and "from-gone" sent
//               by a socket bound to @cryo-unixsk-PID-gone and a zero
//               byte, closed since
//   gone        a datagram socket bound to DIR/gone, since removed, to
//               which is queued "to-gone" sent by
//   goner       an unnamed datagram socket connected to it
//   sh0 sh1     a stream socketpair: "bye" queued to sh1, then sh0 shut
//               for writing
//   tr0         a stream socketpair's end whose other end, tr1, its
//               child holds (at the same number): "to-child" queued to
//               tr1, "to-parent" to tr0
// and with an argument, what a dump refuses (external also what
// --ext-unix-sk keeps):
//   ext         external: a datagram socket connected to PATH, bound
//               outside; stream-external: a stream socket connected to
//               PATH, listening outside
//   rt0 rt1     rights: a stream socketpair with descriptors in flight
//               (SCM_RIGHTS) to rt1: st0, and the read end of a pipe
//               holding "piped", closed since, whose write end is
//   pw          (then with "r" queued to rt1); eventfd: with an eventfd
//               in flight, closed since; epoll: with an epoll in flight
//               twice (two messages "r"), closed since, that watches st1
//               for EPOLLIN with data 0x1122334455667788
//   o1 o2       overbound (kept): two listening sockets bound to DIR/over,
//               o1's file moved away while o2 bound there, then back:
//               o2's name is removed, and DIR/over is o1's
//   f1 f2       overbound: a datagram socket bound to DIR/fifoed and one
//               connected to it that sent "to-f1", the name removed since
//               and a FIFO made there,
//   ff          held open read-write
//   l2 a2       closed-client (kept): a stream socket bound to DIR/l2,
//               listening, and a2, below it, the connection it accepted
//               from a client that sent "from-gone" and closed
//   rel         relative (kept): a datagram socket bound to the relative
//               name "rel" from DIR, its working directory from then on,
//               to which a child that exited since sent "from-exited" by
//               that name
// It prints "ready NAME=FD ... child=PID", then every PERIOD_MS
//   tick N pid=P ok
// after checking that its bound names are still its sockets'.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "subject.h"

#define PERIOD_MS 20
#define SNDBUF 50000
#define PEEKOFF 2
#define RCVBUF 100000

// addr fills a with name: a path, or an abstract name for a leading '@'.
static socklen_t addr(struct sockaddr_un *a, const char *name) {
	memset(a, 0, sizeof *a);
	a->sun_family = AF_UNIX;
	size_t n = strlen(name);
	if (n >= sizeof a->sun_path)
		fail("name too long: %s", name);
	memcpy(a->sun_path, name, n);
	if (name[0] == '@') {
		a->sun_path[0] = 0;
		return offsetof(struct sockaddr_un, sun_path) + n;
	}
	return offsetof(struct sockaddr_un, sun_path) + n + 1;
}

static int sock(int type) {
	int fd = socket(AF_UNIX, type, 0);
	if (fd < 0)
		fail("socket: %s", strerror(errno));
	return fd;
}

static void xbind(int fd, const char *name) {
	struct sockaddr_un a;
	socklen_t n = addr(&a, name);
	if (bind(fd, (struct sockaddr *)&a, n) != 0)
		fail("bind %s: %s", name, strerror(errno));
}

static void xconnect(int fd, const char *name) {
	struct sockaddr_un a;
	socklen_t n = addr(&a, name);
	if (connect(fd, (struct sockaddr *)&a, n) != 0)
		fail("connect %s: %s", name, strerror(errno));
}

static void pair(int type, int sv[2]) {
	if (socketpair(AF_UNIX, type, 0, sv) != 0)
		fail("socketpair: %s", strerror(errno));
}

static void xsend(int fd, const char *s) {
	if (send(fd, s, strlen(s), 0) != (ssize_t)strlen(s))
		fail("send %s on %d: %s", s, fd, strerror(errno));
}

static void xsendto(int fd, const char *s, const char *to) {
	struct sockaddr_un a;
	socklen_t n = addr(&a, to);
	if (sendto(fd, s, strlen(s), 0, (struct sockaddr *)&a, n) != (ssize_t)strlen(s))
		fail("send %s to %s: %s", s, to, strerror(errno));
}

static void setint(int fd, int opt, int v) {
	if (setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v) != 0)
		fail("setsockopt %d on %d: %s", opt, fd, strerror(errno));
}

// check fails unless descriptor fd's socket is bound to name.
static void check(int fd, const char *name) {
	struct sockaddr_un want, got;
	socklen_t n = addr(&want, name), m = sizeof got;
	if (getsockname(fd, (struct sockaddr *)&got, &m) != 0)
		fail("getsockname %d: %s", fd, strerror(errno));
	if (m != n || memcmp(&got, &want, n) != 0)
		fail("fd %d is not bound to %s", fd, name);
}

// send_rights sends "r" with n descriptors in flight (SCM_RIGHTS).
static void send_rights(int via, int *fds, int n) {
	char buf[CMSG_SPACE(2 * sizeof(int))] = {0}, c = 'r';
	struct iovec iov = {&c, 1};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = buf, .msg_controllen = CMSG_SPACE(n * sizeof(int))};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(n * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
	if (sendmsg(via, &m, 0) != 1)
		fail("sendmsg SCM_RIGHTS: %s", strerror(errno));
}

int main(int argc, char **argv) {
	if (argc < 2)
		fail("usage: unixsk DIR [external PATH | stream-external PATH | rights]");
	const char *dir = argv[1], *arg = argc > 2 ? argv[2] : "";
	char lis_name[256], named_name[256], gone_name[256], abs_name[64], pend_name[64];
	snprintf(lis_name, sizeof lis_name, "%s/lis", dir);
	snprintf(named_name, sizeof named_name, "%s/named", dir);
	snprintf(gone_name, sizeof gone_name, "%s/gone", dir);
	snprintf(abs_name, sizeof abs_name, "@cryo-unixsk-%d", getpid());
	snprintf(pend_name, sizeof pend_name, "@cryo-unixsk-%d-pend", getpid());

	int st[2], dg[2], sp[2], sh[2], tr[2];
	pair(SOCK_STREAM, st);
	xsend(st[0], "abc");
	xsend(st[0], "defg");
	setint(st[1], SO_PEEK_OFF, PEEKOFF);
	xsend(st[1], "ba");
	setint(st[0], SO_PASSCRED, 1);
	setint(st[0], SO_SNDBUF, SNDBUF);
	fcntl(st[0], F_SETFL, O_NONBLOCK);

	pair(SOCK_DGRAM, dg);
	xsend(dg[0], "one");
	xsend(dg[0], "three");
	xsend(dg[1], "x");
	setint(dg[1], SO_RCVBUF, RCVBUF);
	setint(dg[1], SO_TIMESTAMP, 1);

	pair(SOCK_SEQPACKET, sp);
	xsend(sp[0], "p1");
	xsend(sp[0], "p22");

	int lis = sock(SOCK_STREAM);
	xbind(lis, lis_name);
	if (chmod(lis_name, 0640) != 0)
		fail("chmod %s: %s", lis_name, strerror(errno));
	if (listen(lis, 5) != 0)
		fail("listen: %s", strerror(errno));
	int cli = sock(SOCK_STREAM);
	xconnect(cli, lis_name);
	int acc = accept(lis, NULL, NULL);
	if (acc < 0)
		fail("accept: %s", strerror(errno));
	xsend(cli, "to-acc");
	xsend(acc, "to-cli");
	int pend1 = sock(SOCK_STREAM), pend2 = sock(SOCK_STREAM);
	xconnect(pend1, lis_name);
	xbind(pend2, pend_name);
	xconnect(pend2, lis_name);

	int abs = sock(SOCK_DGRAM), named = sock(SOCK_DGRAM), anon = sock(SOCK_DGRAM);
	xbind(abs, abs_name);
	setint(abs, SO_TIMESTAMPNS, 1);
	xbind(named, named_name);
	xsendto(named, "from-named", abs_name);
	xsendto(anon, "from-anon", abs_name);
	close(anon);
	char absz_name[64];
	snprintf(absz_name, sizeof absz_name, "@cryo-unixsk-%d-z", getpid());
	struct sockaddr_un absz_addr;
	// The zero byte after the name (addr zeroed it) is part of it.
	socklen_t absz_len = addr(&absz_addr, absz_name) + 1;
	int absz = sock(SOCK_DGRAM);
	if (bind(absz, (struct sockaddr *)&absz_addr, absz_len) != 0)
		fail("bind absz: %s", strerror(errno));
	xsendto(absz, "from-absz", abs_name);
	char gone_abs[64];
	snprintf(gone_abs, sizeof gone_abs, "@cryo-unixsk-%d-gone", getpid());
	struct sockaddr_un gone_addr;
	socklen_t gone_len = addr(&gone_addr, gone_abs) + 1;
	int goner_abs = sock(SOCK_DGRAM);
	if (bind(goner_abs, (struct sockaddr *)&gone_addr, gone_len) != 0)
		fail("bind gone: %s", strerror(errno));
	xsendto(goner_abs, "from-gone", abs_name);
	close(goner_abs);

	int gone = sock(SOCK_DGRAM), goner = sock(SOCK_DGRAM);
	xbind(gone, gone_name);
	xconnect(goner, gone_name);
	xsend(goner, "to-gone");
	if (unlink(gone_name) != 0)
		fail("unlink %s: %s", gone_name, strerror(errno));

	pair(SOCK_STREAM, sh);
	xsend(sh[0], "bye");
	if (shutdown(sh[0], SHUT_WR) != 0)
		fail("shutdown: %s", strerror(errno));

	pair(SOCK_STREAM, tr);
	pid_t self = getpid(), child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
			fail("PR_SET_PDEATHSIG: %s", strerror(errno));
		if (getppid() != self)
			_exit(1);
		close(tr[0]);
		xsend(tr[1], "to-parent");
		for (;;)
			pause();
	}
	close(tr[1]);
	xsend(tr[0], "to-child");
	// The child's data is in tr0 once a read would not block.
	for (int i = 0; i < 1000; i++) {
		char c;
		if (recv(tr[0], &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1)
			break;
		nap_ms(PERIOD_MS);
	}

	char extra[64] = "";
	if (strcmp(arg, "external") == 0 || strcmp(arg, "stream-external") == 0) {
		if (argc < 4)
			fail("%s needs a PATH", arg);
		int ext = sock(strcmp(arg, "external") == 0 ? SOCK_DGRAM : SOCK_STREAM);
		xconnect(ext, argv[3]);
		snprintf(extra, sizeof extra, " ext=%d", ext);
	} else if (strcmp(arg, "rights") == 0 || strcmp(arg, "eventfd") == 0) {
		int rt[2], p[2], fds[2], n = 2;
		pair(SOCK_STREAM, rt);
		if (strcmp(arg, "rights") == 0) {
			if (pipe(p) != 0)
				fail("pipe: %s", strerror(errno));
			if (write(p[1], "piped", 5) != 5)
				fail("write pipe: %s", strerror(errno));
			fds[0] = st[0];
			fds[1] = p[0];
		} else {
			fds[0] = p[0] = eventfd(0, 0);
			p[1] = -1;
			n = 1;
		}
		send_rights(rt[0], fds, n);
		close(p[0]);
		snprintf(extra, sizeof extra, " rt0=%d rt1=%d pw=%d", rt[0], rt[1], p[1]);
	} else if (strcmp(arg, "relative") == 0) {
		// Bound and sent to by a relative name, from DIR, where it
		// stays.
		if (chdir(dir) != 0)
			fail("chdir %s: %s", dir, strerror(errno));
		int rel = sock(SOCK_DGRAM);
		xbind(rel, "rel");
		pid_t sender = fork();
		if (sender == 0) {
			int s = sock(SOCK_DGRAM);
			xconnect(s, "rel");
			xsend(s, "from-exited");
			_exit(0);
		}
		if (sender < 0 || waitpid(sender, NULL, 0) != sender)
			fail("the sender to rel: %s", strerror(errno));
		snprintf(extra, sizeof extra, " rel=%d", rel);
	} else if (strcmp(arg, "overbound") == 0) {
		char over[256], aside[256], fifoed[256];
		snprintf(over, sizeof over, "%s/over", dir);
		snprintf(aside, sizeof aside, "%s/over.tmp", dir);
		snprintf(fifoed, sizeof fifoed, "%s/fifoed", dir);
		int o1 = sock(SOCK_STREAM), o2 = sock(SOCK_STREAM);
		xbind(o1, over);
		if (listen(o1, 1) != 0 || rename(over, aside) != 0)
			fail("listen on and move %s: %s", over, strerror(errno));
		xbind(o2, over);
		if (listen(o2, 1) != 0 || rename(aside, over) != 0)
			fail("listen on %s, move the first back: %s", over, strerror(errno));
		int f1 = sock(SOCK_DGRAM), f2 = sock(SOCK_DGRAM);
		xbind(f1, fifoed);
		xconnect(f2, fifoed);
		xsend(f2, "to-f1");
		if (unlink(fifoed) != 0 || mkfifo(fifoed, 0600) != 0)
			fail("make a FIFO at %s: %s", fifoed, strerror(errno));
		int ff = open(fifoed, O_RDWR);
		if (ff < 0)
			fail("open %s: %s", fifoed, strerror(errno));
		snprintf(extra, sizeof extra, " o1=%d o2=%d f1=%d f2=%d ff=%d", o1, o2, f1, f2, ff);
	} else if (strcmp(arg, "closed-client") == 0) {
		// A server's connection whose client closed, at a descriptor
		// below its listener's (the hole left for it), as a server
		// holds it until it reads the end.
		char l2_name[256];
		snprintf(l2_name, sizeof l2_name, "%s/l2", dir);
		int hole = open("/dev/null", O_RDONLY), l2 = sock(SOCK_STREAM), gc = sock(SOCK_STREAM);
		xbind(l2, l2_name);
		if (hole < 0 || listen(l2, 1) != 0)
			fail("listen on %s: %s", l2_name, strerror(errno));
		xconnect(gc, l2_name);
		close(hole);
		int a2 = accept(l2, NULL, NULL);
		if (a2 != hole)
			fail("accept: %d, want %d: %s", a2, hole, strerror(errno));
		xsend(gc, "from-gone");
		close(gc);
		snprintf(extra, sizeof extra, " l2=%d a2=%d", l2, a2);
	} else if (strcmp(arg, "epoll") == 0) {
		int rt[2];
		pair(SOCK_STREAM, rt);
		int ep = epoll_create1(0);
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1122334455667788ULL};
		if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, st[1], &ev) != 0)
			fail("epoll: %s", strerror(errno));
		send_rights(rt[0], &ep, 1);
		send_rights(rt[0], &ep, 1);
		close(ep);
		snprintf(extra, sizeof extra, " rt0=%d rt1=%d", rt[0], rt[1]);
	}
	printf("ready st0=%d st1=%d dg0=%d dg1=%d sp0=%d sp1=%d lis=%d cli=%d acc=%d pend1=%d pend2=%d "
	       "abs=%d named=%d absz=%d gone=%d goner=%d sh0=%d sh1=%d tr0=%d tr1=%d child=%d%s\n",
	       st[0], st[1], dg[0], dg[1], sp[0], sp[1], lis, cli, acc, pend1, pend2, abs, named, absz, gone, goner,
	       sh[0], sh[1], tr[0], tr[1], child, extra);
	fflush(stdout);
	for (long n = 1;; n++) {
		nap_ms(PERIOD_MS);
		check(lis, lis_name);
		check(abs, abs_name);
		check(named, named_name);
		check(gone, gone_name);
		check(pend2, pend_name);
		printf("tick %ld pid=%d ok\n", n, self);
		fflush(stdout);
	}
}
