// inet: a checkpoint/restore subject holding TCP and UDP sockets, IPv4
// and IPv6, that serves them every tick.
//
// Usage: inet SOCKET... where each SOCKET is one of
//   listen4, listen6  a TCP listener on 127.0.0.1 or ::1 (IPV6_V6ONLY),
//                     port chosen by the kernel, with SO_REUSEADDR,
//                     TCP_NODELAY, SO_KEEPALIVE and TCP_KEEPIDLE=77,
//                     TCP_KEEPINTVL=11, TCP_KEEPCNT=5, TCP_FASTOPEN=5 (as
//                     dnsmasq's), backlog 7; it accepts
//                     a connection, if one waits, writes "hello PORT\n" to
//                     it and closes it
//   listen4:PORT      the same on PORT
//   udp4, udp6        a UDP socket bound on 127.0.0.1 or ::1
//   udpm4, udpm6      the same, a member of multicast group 239.7.7.7 or
//                     ff15::777 on the loopback interface, with a peek
//                     offset (SO_PEEK_OFF) of 0, and signal-driven I/O
//                     (O_ASYNC) to the process, signal SIGUSR2 (ignored)
//   udpt4             the same, with SO_TIMESTAMPING flags that number
//                     the packets sent (OPT_ID: a dump refuses it)
//   udpc4:PORT, udpc6:PORT
//                     the same, connected to PORT on 127.0.0.1 or ::1
//   tcp4:PORT, tcp6:PORT
//                     a TCP connection to PORT on 127.0.0.1 or ::1; once
//                     connected it writes FILL bytes (byte i is i % 251),
//                     as many as the socket takes without blocking, so
//                     that a peer that does not read leaves them queued;
//                     tcp4:PORT:quiet writes nothing, tcp4:PORT:shut then
//                     shuts the connection down for writing (and does not
//                     answer what it reads); tcp4:PORT:eof takes the end
//                     of the stream for a last read: it says "got NAME
//                     EOF", writes "bye|" (unless shut), shuts the
//                     connection down for writing and reads no more
//                     (any other end of the stream fails);
//                     tcp4:PORT:peek sets a peek offset (SO_PEEK_OFF) of 3;
//                     tcp4:PORT:noread shuts it down for reading (a dump
//                     refuses it)
//   mlisten4, mlisten6, mtcp4:PORT...
//                     the same over MPTCP (IPPROTO_MPTCP), as Go programs
//                     listen since Go 1.24
//   new4, new6        a TCP socket never bound, with SO_LINGER (on, 5 s),
//                     TCP_NODELAY, SO_KEEPALIVE, TCP_FASTOPEN=5,
//                     TCP_DEFER_ACCEPT=15, TCP_USER_TIMEOUT=30000 and
//                     TCP_INQ
//   unew4, unew6      a UDP socket never bound, shut down for reading
//                     (shutdown says ENOTCONN, and sets it)
//                     Every tick the subject checks that these are still
//                     not bound, with those options and shutdown state.
//   reuse4            two TCP listeners on one port of 127.0.0.1, bound
//                     and listening with SO_REUSEPORT, which the first
//                     turned off since; checked every tick too
//   ufree4, ufree6    a UDP socket bound with IP_FREEBIND to an address
//                     not local (192.0.2.1, 2001:db8::1), IP_FREEBIND
//                     turned off since; checked every tick too
//   raw4, raw6        a raw ICMP socket (as ping makes when it may not
//                     make a ping socket) bound to 127.0.0.1 or ::1, whose
//                     ICMP type filter passes echo replies alone; checked
//                     every tick; serving, it sends an echo request to
//                     itself and says "got NAME echo SEQ" of each reply
//   rawq4             the same, an echo reply queued to it (a dump
//                     refuses it)
//   drop              not a socket: once the sockets before it are set up,
//                     the subject becomes uid and gid 65534 (nobody), all
//                     its capabilities gone
//   netlink           a NETLINK_ROUTE socket bound to the groups of links
//                     (RTMGRP_LINK) and IPv4 addresses, and in group 33
//   uevent, audit     a NETLINK_KOBJECT_UEVENT socket bound to the group of
//                     the kernel's uevents, a NETLINK_AUDIT socket bound
//   netlinkq          the netlink one, with the answer to a request queued (a
//                     dump refuses it)
// The sockets are left alone until the subject gets SIGUSR1; from then
// on, every tick, a listener accepts and the others read what is queued
// and answer each datagram or read with "echo:" and what they read (a
// datagram to its sender).
// Once set up it prints
//   ready NAME=FD NAME_port=PORT ... [NAME_sent=BYTES]
// with NAME the SOCKET argument up to its colon, then every tick
//   tick N pid=P ok
// and for each answer "got NAME DATA" (DATA up to 64 bytes).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/net_tstamp.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/icmp6.h>
#include <netinet/ip_icmp.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

// ICMP_FILTER and its struct (linux/icmp.h, which clashes with net/if.h).
#define ICMP_FILTER 1
struct icmp_filter {
	unsigned int data;
};

#define PERIOD_MS 20
#define FILL (4 << 20)

enum kind { LISTEN, UDP, TCP, IDLE, NETLINK, NEW, FREE, REUSE, ICMP };

struct sock {
	char name[32];
	enum kind kind;
	int fd, fd2;
	int port;
	long sent;
	int shut;
	int eof;
};

static volatile sig_atomic_t serving;

static void on_usr1(int sig) {
	(void)sig;
	serving = 1;
}

// new_tcp_opts are the TCP options of a TCP socket never bound, which
// CRIU's images have no field for (cryo keeps them in its own): a
// listener's to be, and a connection's to be. TCP_DEFER_ACCEPT's is in
// seconds the kernel keeps as a count of retransmissions: 15 stays 15.
static const struct {
	int opt, v;
	const char *name;
} new_tcp_opts[] = {
	{TCP_FASTOPEN, 5, "TCP_FASTOPEN"},
	{TCP_DEFER_ACCEPT, 15, "TCP_DEFER_ACCEPT"},
	{TCP_USER_TIMEOUT, 30000, "TCP_USER_TIMEOUT"},
	{TCP_INQ, 1, "TCP_INQ"},
};

static void setint(int fd, int level, int opt, int v, const char *name) {
	if (setsockopt(fd, level, opt, &v, sizeof v) < 0)
		fail("setsockopt %s: %s", name, strerror(errno));
}

// loopback fills sa with the loopback address of family and port.
static socklen_t loopback(int family, int port, struct sockaddr_storage *sa) {
	memset(sa, 0, sizeof *sa);
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)sa;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		return sizeof *in;
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	in6->sin6_addr = in6addr_loopback;
	return sizeof *in6;
}

// nonlocal fills sa with an address of family no host has (TEST-NET-1,
// the documentation prefix), port 0.
static socklen_t nonlocal(int family, struct sockaddr_storage *sa) {
	memset(sa, 0, sizeof *sa);
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)sa;
		in->sin_family = AF_INET;
		inet_pton(AF_INET, "192.0.2.1", &in->sin_addr);
		return sizeof *in;
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
	in6->sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::1", &in6->sin6_addr);
	return sizeof *in6;
}

static int local_port(int fd) {
	struct sockaddr_storage sa;
	socklen_t len = sizeof sa;
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		fail("getsockname: %s", strerror(errno));
	if (sa.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&sa)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
}

static void echo(struct sock *s);

static void setup(struct sock *s, const char *arg) {
	const char *colon = strchr(arg, ':');
	size_t n = colon ? (size_t)(colon - arg) : strlen(arg);
	snprintf(s->name, sizeof s->name, "%.*s", (int)n, arg);
	int family = s->name[n - 1] == '6' ? AF_INET6 : AF_INET;
	struct sockaddr_storage sa;
	socklen_t len;
	// An m before a TCP socket's name makes it MPTCP.
	int stream = arg[0] == 'm' ? IPPROTO_MPTCP : 0;
	if (stream)
		arg++;
	if (!strncmp(arg, "listen", 6)) {
		s->kind = LISTEN;
		s->fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK, stream);
		if (s->fd < 0)
			fail("socket: %s", strerror(errno));
		setint(s->fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
		if (family == AF_INET6)
			setint(s->fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
		setint(s->fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
		setint(s->fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
		setint(s->fd, IPPROTO_TCP, TCP_KEEPIDLE, 77, "TCP_KEEPIDLE");
		setint(s->fd, IPPROTO_TCP, TCP_KEEPINTVL, 11, "TCP_KEEPINTVL");
		setint(s->fd, IPPROTO_TCP, TCP_KEEPCNT, 5, "TCP_KEEPCNT");
		setint(s->fd, IPPROTO_TCP, TCP_FASTOPEN, 5, "TCP_FASTOPEN");
		len = loopback(family, colon ? atoi(colon + 1) : 0, &sa);
		if (bind(s->fd, (struct sockaddr *)&sa, len) < 0 || listen(s->fd, 7) < 0)
			fail("bind and listen: %s", strerror(errno));
	} else if (!strncmp(arg, "udp", 3)) {
		s->kind = UDP;
		s->fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		if (s->fd < 0)
			fail("socket: %s", strerror(errno));
		len = loopback(family, 0, &sa);
		if (bind(s->fd, (struct sockaddr *)&sa, len) < 0)
			fail("bind: %s", strerror(errno));
		if (arg[3] == 'm') {
			struct ip_mreqn m4 = {.imr_ifindex = if_nametoindex("lo")};
			struct ipv6_mreq m6 = {.ipv6mr_interface = if_nametoindex("lo")};
			inet_pton(AF_INET, "239.7.7.7", &m4.imr_multiaddr);
			inet_pton(AF_INET6, "ff15::777", &m6.ipv6mr_multiaddr);
			if ((family == AF_INET ? setsockopt(s->fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m4, sizeof m4)
					       : setsockopt(s->fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &m6, sizeof m6)) < 0)
				fail("join a multicast group: %s", strerror(errno));
			setint(s->fd, SOL_SOCKET, SO_PEEK_OFF, 0, "SO_PEEK_OFF");
			if (signal(SIGUSR2, SIG_IGN) == SIG_ERR || fcntl(s->fd, F_SETOWN, getpid()) < 0 ||
			    fcntl(s->fd, F_SETSIG, SIGUSR2) < 0 || fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_ASYNC) < 0)
				fail("signal-driven I/O: %s", strerror(errno));
		}
		if (arg[3] == 't')
			setint(s->fd, SOL_SOCKET, SO_TIMESTAMPING, SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_OPT_ID, "SO_TIMESTAMPING");
		len = loopback(family, colon ? atoi(colon + 1) : 0, &sa);
		if (colon && connect(s->fd, (struct sockaddr *)&sa, len) < 0)
			fail("connect to %s: %s", arg, strerror(errno));
	} else if (!strncmp(arg, "tcp", 3) && colon) {
		s->kind = TCP;
		s->fd = socket(family, SOCK_STREAM, stream);
		if (s->fd < 0)
			fail("socket: %s", strerror(errno));
		len = loopback(family, atoi(colon + 1), &sa);
		if (connect(s->fd, (struct sockaddr *)&sa, len) < 0)
			fail("connect to %s: %s", arg, strerror(errno));
		if (fcntl(s->fd, F_SETFL, O_NONBLOCK) < 0)
			fail("fcntl: %s", strerror(errno));
		char buf[4096];
		while (s->sent < FILL && !strstr(colon, ":quiet")) {
			for (size_t i = 0; i < sizeof buf; i++)
				buf[i] = (s->sent + i) % 251;
			ssize_t w = write(s->fd, buf, sizeof buf);
			if (w < 0 && errno == EAGAIN)
				break;
			if (w < 0)
				fail("write: %s", strerror(errno));
			s->sent += w;
		}
		s->eof = strstr(colon, ":eof") != NULL;
		if (strstr(colon, ":peek"))
			setint(s->fd, SOL_SOCKET, SO_PEEK_OFF, 3, "SO_PEEK_OFF");
		if (strstr(colon, ":noread") && shutdown(s->fd, SHUT_RD) < 0)
			fail("shutdown: %s", strerror(errno));
		if (strstr(colon, ":shut")) {
			s->shut = 1;
			if (shutdown(s->fd, SHUT_WR) < 0)
				fail("shutdown: %s", strerror(errno));
		}
	} else if (!strncmp(arg, "netlink", 7) || !strcmp(arg, "uevent") || !strcmp(arg, "audit")) {
		s->kind = NETLINK;
		int protocol = arg[0] == 'u' ? NETLINK_KOBJECT_UEVENT : arg[0] == 'a' ? NETLINK_AUDIT : NETLINK_ROUTE;
		s->fd = socket(AF_NETLINK, SOCK_RAW, protocol);
		if (s->fd < 0)
			fail("socket: %s", strerror(errno));
		struct sockaddr_nl nl = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR};
		if (protocol != NETLINK_ROUTE)
			nl.nl_groups = protocol == NETLINK_KOBJECT_UEVENT; // the kernel's uevents
		if (bind(s->fd, (struct sockaddr *)&nl, sizeof nl) < 0)
			fail("bind netlink: %s", strerror(errno));
		if (protocol == NETLINK_ROUTE)
			setint(s->fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, 33, "NETLINK_ADD_MEMBERSHIP");
		if (!strcmp(arg, "netlinkq")) {
			struct {
				struct nlmsghdr h;
				struct rtgenmsg g;
			} req = {{sizeof req, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 1, 0}, {AF_UNSPEC}};
			if (send(s->fd, &req, sizeof req, 0) < 0)
				fail("send netlink request: %s", strerror(errno));
		}
		socklen_t nlen = sizeof nl;
		if (getsockname(s->fd, (struct sockaddr *)&nl, &nlen) < 0)
			fail("getsockname: %s", strerror(errno));
		s->port = nl.nl_pid;
		return;
	} else if (!strcmp(arg, "reuse4")) {
		s->kind = REUSE;
		int port = 0;
		for (int i = 0; i < 2; i++) {
			int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			if (fd < 0)
				fail("socket: %s", strerror(errno));
			setint(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
			len = loopback(AF_INET, port, &sa);
			if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 3) < 0)
				fail("bind and listen with SO_REUSEPORT: %s", strerror(errno));
			port = local_port(fd);
			*(i ? &s->fd2 : &s->fd) = fd;
		}
		setint(s->fd, SOL_SOCKET, SO_REUSEPORT, 0, "SO_REUSEPORT");
	} else if (!strncmp(arg, "ufree", 5)) {
		s->kind = FREE;
		s->fd = socket(family, SOCK_DGRAM, 0);
		if (s->fd < 0)
			fail("socket: %s", strerror(errno));
		setint(s->fd, SOL_IP, IP_FREEBIND, 1, "IP_FREEBIND");
		len = nonlocal(family, &sa);
		if (bind(s->fd, (struct sockaddr *)&sa, len) < 0)
			fail("bind to an address not local: %s", strerror(errno));
		setint(s->fd, SOL_IP, IP_FREEBIND, 0, "IP_FREEBIND");
	} else if (!strncmp(arg, "new", 3) || !strncmp(arg, "unew", 4)) {
		s->kind = NEW;
		int udp = arg[0] == 'u';
		s->fd = socket(family, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
		if (s->fd < 0)
			fail("socket: %s", strerror(errno));
		if (udp && (shutdown(s->fd, SHUT_RD) == 0 || errno != ENOTCONN))
			fail("shutdown of a socket never bound: %s, want ENOTCONN", strerror(errno));
		if (!udp) {
			struct linger l = {1, 5};
			if (setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) < 0)
				fail("setsockopt SO_LINGER: %s", strerror(errno));
			setint(s->fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
			setint(s->fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
			for (size_t i = 0; i < sizeof new_tcp_opts / sizeof new_tcp_opts[0]; i++)
				setint(s->fd, IPPROTO_TCP, new_tcp_opts[i].opt, new_tcp_opts[i].v, new_tcp_opts[i].name);
		}
	} else if (!strncmp(arg, "raw", 3)) {
		s->kind = ICMP;
		s->fd = socket(family, SOCK_RAW | SOCK_NONBLOCK, family == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6);
		if (s->fd < 0)
			fail("socket: %s", strerror(errno));
		if (family == AF_INET) {
			struct icmp_filter f = {~(1U << ICMP_ECHOREPLY)};
			if (setsockopt(s->fd, SOL_RAW, ICMP_FILTER, &f, sizeof f) < 0)
				fail("setsockopt ICMP_FILTER: %s", strerror(errno));
		} else {
			struct icmp6_filter f;
			ICMP6_FILTER_SETBLOCKALL(&f);
			ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &f);
			if (setsockopt(s->fd, IPPROTO_ICMPV6, ICMP6_FILTER, &f, sizeof f) < 0)
				fail("setsockopt ICMP6_FILTER: %s", strerror(errno));
		}
		len = loopback(family, 0, &sa);
		if (bind(s->fd, (struct sockaddr *)&sa, len) < 0)
			fail("bind: %s", strerror(errno));
		if (arg[3] == 'q') {
			echo(s);
			struct pollfd p = {.fd = s->fd, .events = POLLIN};
			if (poll(&p, 1, 5000) != 1)
				fail("no echo reply queued");
		}
	} else {
		fail("unknown socket %s", arg);
	}
	s->port = local_port(s->fd);
}

// echo sends an echo request to the loopback address of raw ICMP socket
// s, of id the pid and sequence number its count of requests; serving,
// it first says "got NAME echo SEQ" of each echo reply to it queued.
static void echo(struct sock *s) {
	static int seq;
	unsigned char buf[2048];
	struct sockaddr_storage sa;
	int v6 = s->name[strlen(s->name) - 1] == '6';
	for (ssize_t n; serving && (n = recv(s->fd, buf, sizeof buf, 0)) != 0;) {
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			fail("recv %s: %s", s->name, strerror(errno));
		// An IPv4 raw socket reads the IP header first.
		size_t off = v6 ? 0 : (buf[0] & 0xf) * 4;
		if ((size_t)n < off + 8)
			fail("%s: a packet of %zd bytes", s->name, n);
		unsigned char *icmp = buf + off;
		if (icmp[0] != (v6 ? ICMP6_ECHO_REPLY : ICMP_ECHOREPLY))
			fail("%s: ICMP type %d passed its filter", s->name, icmp[0]);
		if ((icmp[4] << 8 | icmp[5]) == (getpid() & 0xffff))
			printf("got %s echo %d\n", s->name, icmp[6] << 8 | icmp[7]);
	}
	seq++;
	unsigned char req[16] = {v6 ? ICMP6_ECHO_REQUEST : ICMP_ECHO, 0, 0, 0, getpid() >> 8 & 0xff, getpid() & 0xff, seq >> 8 & 0xff, seq & 0xff};
	if (!v6) { // the kernel sums ICMPv6, not ICMP
		unsigned sum = 0;
		for (size_t i = 0; i < sizeof req; i += 2)
			sum += req[i] << 8 | req[i + 1];
		sum = (sum & 0xffff) + (sum >> 16);
		sum = ~(sum + (sum >> 16)) & 0xffff;
		req[2] = sum >> 8, req[3] = sum & 0xff;
	}
	socklen_t len = loopback(v6 ? AF_INET6 : AF_INET, 0, &sa);
	if (sendto(s->fd, req, sizeof req, 0, (struct sockaddr *)&sa, len) != sizeof req)
		fail("send an echo request from %s: %s", s->name, strerror(errno));
}

// check_icmp fails unless raw ICMP socket s still passes echo replies
// alone and is bound to the loopback address.
static void check_icmp(struct sock *s) {
	int v6 = s->name[strlen(s->name) - 1] == '6';
	struct sockaddr_storage sa;
	socklen_t sl = sizeof sa;
	if (getsockname(s->fd, (struct sockaddr *)&sa, &sl) < 0)
		fail("getsockname %s: %s", s->name, strerror(errno));
	int bound = v6 ? !memcmp(&((struct sockaddr_in6 *)&sa)->sin6_addr, &in6addr_loopback, 16)
		       : ((struct sockaddr_in *)&sa)->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
	if (!bound)
		fail("%s is not bound to the loopback address", s->name);
	if (v6) {
		struct icmp6_filter f;
		socklen_t fl = sizeof f;
		if (getsockopt(s->fd, IPPROTO_ICMPV6, ICMP6_FILTER, &f, &fl) < 0)
			fail("getsockopt ICMP6_FILTER %s: %s", s->name, strerror(errno));
		for (int t = 0; t < 256; t++)
			if (ICMP6_FILTER_WILLPASS(t, &f) != (t == ICMP6_ECHO_REPLY))
				fail("%s: its filter %s ICMPv6 type %d", s->name, ICMP6_FILTER_WILLPASS(t, &f) ? "passes" : "blocks", t);
		return;
	}
	struct icmp_filter f;
	socklen_t fl = sizeof f;
	if (getsockopt(s->fd, SOL_RAW, ICMP_FILTER, &f, &fl) < 0 || f.data != ~(1U << ICMP_ECHOREPLY))
		fail("%s: ICMP_FILTER %#x, want %#x", s->name, f.data, ~(1U << ICMP_ECHOREPLY));
}

static void got(struct sock *s, const char *data, ssize_t n) {
	printf("got %s %.*s\n", s->name, (int)(n > 64 ? 64 : n), data);
	fflush(stdout);
}

static void serve(struct sock *s) {
	char buf[65536], out[65536 + 8];
	struct sockaddr_storage from;
	socklen_t len;
	ssize_t n;
	if (!serving)
		return;
	switch (s->kind) {
	case LISTEN: {
		int c = accept(s->fd, NULL, NULL);
		if (c < 0) {
			if (errno != EAGAIN)
				fail("accept %s: %s", s->name, strerror(errno));
			return;
		}
		int k = snprintf(out, sizeof out, "hello %d\n", s->port);
		if (write(c, out, k) != k)
			fail("write to accepted: %s", strerror(errno));
		close(c);
		return;
	}
	case UDP:
		for (;;) {
			len = sizeof from;
			n = recvfrom(s->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
			if (n < 0 && errno == EAGAIN)
				return;
			if (n < 0)
				fail("recvfrom %s: %s", s->name, strerror(errno));
			got(s, buf, n);
			memcpy(out, "echo:", 5);
			memcpy(out + 5, buf, n);
			if (sendto(s->fd, out, n + 5, 0, (struct sockaddr *)&from, len) < 0)
				fail("sendto from %s: %s", s->name, strerror(errno));
		}
	case TCP:
		n = read(s->fd, buf, sizeof buf);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n == 0 && s->eof) {
			got(s, "EOF", 3);
			if (!s->shut && (write(s->fd, "bye|", 4) != 4 || shutdown(s->fd, SHUT_WR) < 0))
				fail("write %s: %s", s->name, strerror(errno));
			s->kind = IDLE;
			return;
		}
		if (n <= 0)
			fail("read %s: %zd %s", s->name, n, n < 0 ? strerror(errno) : "end of stream");
		got(s, buf, n);
		if (s->shut)
			return;
		memcpy(out, "echo:", 5);
		memcpy(out + 5, buf, n);
		if (write(s->fd, out, n + 5) != n + 5)
			fail("write %s: %s", s->name, strerror(errno));
		return;
	case NEW: {
		int type = 0, v = 0;
		socklen_t tl = sizeof type, vl = sizeof v;
		if (getsockopt(s->fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0)
			fail("SO_TYPE %s: %s", s->name, strerror(errno));
		if (local_port(s->fd) != 0)
			fail("%s is bound to port %d", s->name, local_port(s->fd));
		if (type == SOCK_STREAM) {
			struct linger l;
			socklen_t ll = sizeof l;
			if (getsockopt(s->fd, SOL_SOCKET, SO_LINGER, &l, &ll) < 0 || l.l_onoff != 1 || l.l_linger != 5)
				fail("%s: SO_LINGER %d %d, want 1 5", s->name, l.l_onoff, l.l_linger);
			if (getsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &v, &vl) < 0 || !v)
				fail("%s lost TCP_NODELAY", s->name);
			for (size_t i = 0; i < sizeof new_tcp_opts / sizeof new_tcp_opts[0]; i++)
				if (getsockopt(s->fd, IPPROTO_TCP, new_tcp_opts[i].opt, &v, &vl) < 0 || v != new_tcp_opts[i].v)
					fail("%s: %s %d, want %d", s->name, new_tcp_opts[i].name, v, new_tcp_opts[i].v);
			return;
		}
		struct pollfd p = {.fd = s->fd, .events = POLLRDHUP};
		if (poll(&p, 1, 0) != 1 || !(p.revents & POLLRDHUP))
			fail("%s is not shut down for reading (poll %#x)", s->name, p.revents);
		return;
	}
	case REUSE: {
		int a = -1, b = -1;
		socklen_t l = sizeof a;
		if (getsockopt(s->fd, SOL_SOCKET, SO_REUSEPORT, &a, &l) < 0 || getsockopt(s->fd2, SOL_SOCKET, SO_REUSEPORT, &b, &l) < 0 ||
		    a != 0 || b != 1)
			fail("%s: SO_REUSEPORT %d and %d, want 0 and 1", s->name, a, b);
		if (local_port(s->fd) != s->port || local_port(s->fd2) != s->port)
			fail("%s: ports %d and %d, want %d", s->name, local_port(s->fd), local_port(s->fd2), s->port);
		return;
	}
	case FREE: {
		struct sockaddr_storage sa, want;
		socklen_t sl = sizeof sa;
		int v = 1;
		socklen_t vl = sizeof v;
		if (getsockname(s->fd, (struct sockaddr *)&sa, &sl) < 0)
			fail("getsockname %s: %s", s->name, strerror(errno));
		nonlocal(sa.ss_family, &want);
		int same = sa.ss_family == AF_INET
			       ? ((struct sockaddr_in *)&sa)->sin_addr.s_addr == ((struct sockaddr_in *)&want)->sin_addr.s_addr
			       : !memcmp(&((struct sockaddr_in6 *)&sa)->sin6_addr, &((struct sockaddr_in6 *)&want)->sin6_addr, 16);
		if (!same || local_port(s->fd) != s->port)
			fail("%s is not bound where it was", s->name);
		if (getsockopt(s->fd, SOL_IP, IP_FREEBIND, &v, &vl) < 0 || v)
			fail("%s: IP_FREEBIND %d, want 0", s->name, v);
		return;
	}
	case ICMP:
		check_icmp(s);
		if (serving)
			echo(s);
		return;
	case IDLE:
	case NETLINK:
		return;
	}
}

int main(int argc, char **argv) {
	static struct sock socks[16];
	int n = argc - 1;
	if (n < 1 || n > 16)
		fail("usage: inet SOCKET...");
	signal(SIGUSR1, on_usr1);
	printf("ready");
	for (int i = 0; i < n; i++) {
		if (!strcmp(argv[i + 1], "drop")) {
			become_nobody();
			socks[i].kind = IDLE;
			socks[i].fd = -1;
			snprintf(socks[i].name, sizeof socks[i].name, "drop");
			continue;
		}
		setup(&socks[i], argv[i + 1]);
		printf(" %s=%d %s_port=%d", socks[i].name, socks[i].fd, socks[i].name, socks[i].port);
		if (socks[i].kind == TCP)
			printf(" %s_sent=%ld", socks[i].name, socks[i].sent);
	}
	printf("\n");
	fflush(stdout);
	for (long tick = 1;; tick++) {
		nap_ms(PERIOD_MS);
		for (int i = 0; i < n; i++)
			serve(&socks[i]);
		printf("tick %ld pid=%d ok\n", tick, getpid());
		fflush(stdout);
	}
}
