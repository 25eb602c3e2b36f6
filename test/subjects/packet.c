// packet: a checkpoint/restore subject holding AF_PACKET sockets, as DHCP
// clients, lldpd and arping hold them, on the loopback interface.
//
// Usage: packet SOCKET... where each SOCKET is one of
//   raw     a SOCK_RAW socket made with protocol 0 and bound to lo and
//           ethertype 0x88b5 (as libpcap makes and binds its own), with
//           PACKET_VERSION TPACKET_V2, PACKET_RESERVE 64, PACKET_ORIGDEV,
//           PACKET_IGNORE_OUTGOING, PACKET_TIMESTAMP, SO_RCVTIMEO, the
//           subject's socket filter, and a promiscuous membership of lo
//   dgram   a SOCK_DGRAM socket of ethertype 0x88b6 bound to lo, with
//           PACKET_AUXDATA, PACKET_LOSS, PACKET_COPY_THRESH 1, memberships
//           of lo's multicast address 01:00:5e:00:00:fb (twice) and of all
//           multicast, in fanout group PID & 0xffff (PACKET_FANOUT_LB with
//           PACKET_FANOUT_FLAG_ROLLOVER), with the subject's socket filter
//   send    a SOCK_RAW socket of protocol 0, never bound, with
//           PACKET_VNET_HDR and PACKET_QDISC_BYPASS
//   ring    a SOCK_RAW socket with a receive ring (PACKET_RX_RING), mapped
//           (a dump refuses it)
//   queued  a SOCK_DGRAM socket of ethertype 0x88b7 bound to lo, a frame
//           queued to it (a dump refuses it)
//   drop    not a socket: once the sockets before it are set up, the
//           subject becomes uid and gid 65534 (nobody), all its
//           capabilities gone
// The subject's frames come from a link address that begins with its pid
// (4 bytes, big-endian); its socket filter takes those alone, and its
// fanout group is its own, so that subjects running side by side (tests
// of several packages) do not see each other's frames.
// Every tick the subject checks that each socket is as it set it
// (getsockname, getsockopt). From SIGUSR1 on, with send among them, it
// also sends a frame of each ethertype on lo every tick, and raw and dgram
// must each receive theirs: it says "got NAME SEQ".
// Once set up it prints
//   ready NAME=FD ...
// then every tick
//   tick N pid=P ok
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/net_tstamp.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20
#define ETH_RAW 0x88b5
#define ETH_DGRAM 0x88b6
#define ETH_QUEUED 0x88b7
#define FANOUT_TYPE ((PACKET_FANOUT_LB | PACKET_FANOUT_FLAG_ROLLOVER) << 16)

enum kind { RAW, DGRAM, SEND, RING, QUEUED, IDLE };

struct sock {
	enum kind kind;
	int fd;
	char name[16];
};

static volatile sig_atomic_t serving;
static int lo;

static void on_usr1(int sig) {
	(void)sig;
	serving = 1;
}

static int packet_socket(int type, int protocol) {
	int fd = socket(AF_PACKET, type, protocol);
	if (fd < 0)
		fail("socket(AF_PACKET, %d, %#x): %s", type, protocol, strerror(errno));
	return fd;
}

static void bind_lo(int fd, int ethertype) {
	struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_protocol = htons(ethertype), .sll_ifindex = lo};
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
		fail("bind to lo, %#x: %s", ethertype, strerror(errno));
}

static void setint(int fd, int level, int opt, int v, const char *name) {
	if (setsockopt(fd, level, opt, &v, sizeof v) < 0)
		fail("set %s: %s", name, strerror(errno));
}

static int getint(int fd, int level, int opt, const char *name) {
	int v;
	socklen_t l = sizeof v;
	if (getsockopt(fd, level, opt, &v, &l) < 0)
		fail("get %s: %s", name, strerror(errno));
	return v;
}

static void member(int fd, int type, const unsigned char *addr, int alen) {
	struct packet_mreq m = {.mr_ifindex = lo, .mr_type = type, .mr_alen = alen};
	memcpy(m.mr_address, addr, alen);
	if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &m, sizeof m) < 0)
		fail("add membership %d: %s", type, strerror(errno));
}

static const unsigned char mcast[ETH_ALEN] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb};

// own_filter takes the frames whose source link address begins with the
// subject's pid (set in main), read below a SOCK_DGRAM socket's data too.
static struct sock_filter own_filter[] = {
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_LL_OFF + 6),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
	BPF_STMT(BPF_RET | BPF_K, 0xffff),
	BPF_STMT(BPF_RET | BPF_K, 0),
};

static void attach_own_filter(int fd) {
	struct sock_fprog prog = {.len = sizeof own_filter / sizeof own_filter[0], .filter = own_filter};
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0)
		fail("attach filter: %s", strerror(errno));
}

static void check_own_filter(const char *name, int fd) {
	struct sock_filter f[8];
	socklen_t l = 8; // SO_GET_FILTER's length is in instructions
	if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, f, &l) < 0 || l != 4 || memcmp(f, own_filter, sizeof own_filter))
		fail("%s: filter of %d instructions, not the one attached", name, (int)l);
}

// send_frame sends a frame of ethertype on lo through fd, which has
// PACKET_VNET_HDR (vnet) or not.
static void send_frame(int fd, int ethertype, const char *payload, int vnet) {
	unsigned char buf[128] = {0};
	int off = vnet ? 10 : 0; // struct virtio_net_hdr, no offloads
	// To lo's address (all zeros), from one beginning with the pid.
	uint32_t pid = htonl(getpid());
	memcpy(buf + off + 6, &pid, 4);
	buf[off + 12] = ethertype >> 8;
	buf[off + 13] = ethertype & 0xff;
	int n = snprintf((char *)buf + off + 14, sizeof buf - off - 14, "%s", payload);
	struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_protocol = htons(ethertype), .sll_ifindex = lo, .sll_halen = ETH_ALEN};
	if (sendto(fd, buf, off + 14 + n, 0, (struct sockaddr *)&a, sizeof a) < 0)
		fail("send a frame of %#x: %s", ethertype, strerror(errno));
}

static void setup(struct sock *s, const char *arg) {
	snprintf(s->name, sizeof s->name, "%s", arg);
	if (!strcmp(arg, "raw")) {
		s->kind = RAW;
		s->fd = packet_socket(SOCK_RAW, 0);
		attach_own_filter(s->fd);
		bind_lo(s->fd, ETH_RAW);
		setint(s->fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2, "PACKET_VERSION");
		setint(s->fd, SOL_PACKET, PACKET_RESERVE, 64, "PACKET_RESERVE");
		setint(s->fd, SOL_PACKET, PACKET_ORIGDEV, 1, "PACKET_ORIGDEV");
		setint(s->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING");
		setint(s->fd, SOL_PACKET, PACKET_TIMESTAMP, SOF_TIMESTAMPING_RAW_HARDWARE, "PACKET_TIMESTAMP");
		struct timeval tv = {1, 500000};
		if (setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
			fail("set SO_RCVTIMEO: %s", strerror(errno));
		member(s->fd, PACKET_MR_PROMISC, NULL, 0);
	} else if (!strcmp(arg, "dgram")) {
		s->kind = DGRAM;
		s->fd = packet_socket(SOCK_DGRAM | SOCK_NONBLOCK, htons(ETH_DGRAM));
		attach_own_filter(s->fd);
		bind_lo(s->fd, ETH_DGRAM);
		setint(s->fd, SOL_PACKET, PACKET_AUXDATA, 1, "PACKET_AUXDATA");
		setint(s->fd, SOL_PACKET, PACKET_LOSS, 1, "PACKET_LOSS");
		setint(s->fd, SOL_PACKET, PACKET_COPY_THRESH, 1, "PACKET_COPY_THRESH");
		member(s->fd, PACKET_MR_MULTICAST, mcast, ETH_ALEN);
		member(s->fd, PACKET_MR_MULTICAST, mcast, ETH_ALEN);
		member(s->fd, PACKET_MR_ALLMULTI, NULL, 0);
		setint(s->fd, SOL_PACKET, PACKET_FANOUT, (getpid() & 0xffff) | FANOUT_TYPE, "PACKET_FANOUT");
	} else if (!strcmp(arg, "send")) {
		s->kind = SEND;
		s->fd = packet_socket(SOCK_RAW, 0);
		setint(s->fd, SOL_PACKET, PACKET_VNET_HDR, 1, "PACKET_VNET_HDR");
		setint(s->fd, SOL_PACKET, PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS");
	} else if (!strcmp(arg, "ring")) {
		s->kind = RING;
		s->fd = packet_socket(SOCK_RAW, 0);
		struct tpacket_req req = {.tp_block_size = 4096, .tp_block_nr = 1, .tp_frame_size = 2048, .tp_frame_nr = 2};
		if (setsockopt(s->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0)
			fail("set PACKET_RX_RING: %s", strerror(errno));
		if (mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0) == MAP_FAILED)
			fail("map the ring: %s", strerror(errno));
	} else if (!strcmp(arg, "queued")) {
		s->kind = QUEUED;
		s->fd = packet_socket(SOCK_DGRAM, htons(ETH_QUEUED));
		bind_lo(s->fd, ETH_QUEUED);
		int tx = packet_socket(SOCK_RAW, 0);
		send_frame(tx, ETH_QUEUED, "queued", 0);
		close(tx);
		struct pollfd p = {.fd = s->fd, .events = POLLIN};
		if (poll(&p, 1, 5000) != 1)
			fail("no frame queued");
	} else {
		fail("unknown socket %s", arg);
	}
}

static void check_raw(int fd) {
	struct sockaddr_ll a;
	socklen_t l = sizeof a;
	if (getsockname(fd, (struct sockaddr *)&a, &l) < 0)
		fail("raw: getsockname: %s", strerror(errno));
	if (a.sll_ifindex != lo || a.sll_protocol != htons(ETH_RAW))
		fail("raw: bound to %d, %#x; want %d, %#x", a.sll_ifindex, ntohs(a.sll_protocol), lo, ETH_RAW);
	if (getint(fd, SOL_SOCKET, SO_TYPE, "SO_TYPE") != SOCK_RAW)
		fail("raw: not SOCK_RAW");
	if (getint(fd, SOL_PACKET, PACKET_VERSION, "PACKET_VERSION") != TPACKET_V2 ||
	    getint(fd, SOL_PACKET, PACKET_RESERVE, "PACKET_RESERVE") != 64 ||
	    getint(fd, SOL_PACKET, PACKET_ORIGDEV, "PACKET_ORIGDEV") != 1 ||
	    getint(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, "PACKET_IGNORE_OUTGOING") != 1 ||
	    getint(fd, SOL_PACKET, PACKET_TIMESTAMP, "PACKET_TIMESTAMP") != SOF_TIMESTAMPING_RAW_HARDWARE ||
	    getint(fd, SOL_PACKET, PACKET_AUXDATA, "PACKET_AUXDATA") != 0)
		fail("raw: PACKET_VERSION, RESERVE, ORIGDEV, IGNORE_OUTGOING, TIMESTAMP or AUXDATA not as set");
	struct timeval tv;
	l = sizeof tv;
	if (getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &l) < 0 || tv.tv_sec != 1 || tv.tv_usec != 500000)
		fail("raw: SO_RCVTIMEO %ld.%06ld, want 1.5", (long)tv.tv_sec, (long)tv.tv_usec);
	check_own_filter("raw", fd);
}

static void check_dgram(int fd) {
	struct sockaddr_ll a;
	socklen_t l = sizeof a;
	if (getsockname(fd, (struct sockaddr *)&a, &l) < 0)
		fail("dgram: getsockname: %s", strerror(errno));
	if (a.sll_ifindex != lo || a.sll_protocol != htons(ETH_DGRAM))
		fail("dgram: bound to %d, %#x; want %d, %#x", a.sll_ifindex, ntohs(a.sll_protocol), lo, ETH_DGRAM);
	if (getint(fd, SOL_SOCKET, SO_TYPE, "SO_TYPE") != SOCK_DGRAM)
		fail("dgram: not SOCK_DGRAM");
	if (getint(fd, SOL_PACKET, PACKET_AUXDATA, "PACKET_AUXDATA") != 1 || getint(fd, SOL_PACKET, PACKET_LOSS, "PACKET_LOSS") != 1 ||
	    getint(fd, SOL_PACKET, PACKET_VERSION, "PACKET_VERSION") != TPACKET_V1)
		fail("dgram: PACKET_AUXDATA, PACKET_LOSS or PACKET_VERSION not as set");
	int fanout = getint(fd, SOL_PACKET, PACKET_FANOUT, "PACKET_FANOUT");
	if ((unsigned)fanout != ((getpid() & 0xffffu) | (unsigned)PACKET_FANOUT_LB << 16 | (unsigned)(PACKET_FANOUT_FLAG_ROLLOVER >> 8) << 24))
		fail("dgram: PACKET_FANOUT %#x", fanout);
	check_own_filter("dgram", fd);
}

static void check_send(int fd) {
	struct sockaddr_ll a;
	socklen_t l = sizeof a;
	if (getsockname(fd, (struct sockaddr *)&a, &l) < 0)
		fail("send: getsockname: %s", strerror(errno));
	if (a.sll_ifindex != 0 || a.sll_protocol != 0)
		fail("send: bound to %d, %#x; want neither", a.sll_ifindex, ntohs(a.sll_protocol));
	if (getint(fd, SOL_PACKET, PACKET_VNET_HDR, "PACKET_VNET_HDR") != 1 ||
	    getint(fd, SOL_PACKET, PACKET_QDISC_BYPASS, "PACKET_QDISC_BYPASS") != 1)
		fail("send: PACKET_VNET_HDR or PACKET_QDISC_BYPASS not set");
}

// receive waits for the frame of payload want on fd, through which a
// SOCK_RAW socket reads it whole, a SOCK_DGRAM one without its header.
static void receive(struct sock *s, const char *want, int raw) {
	struct pollfd p = {.fd = s->fd, .events = POLLIN};
	if (poll(&p, 1, 5000) != 1)
		fail("%s: no frame", s->name);
	char buf[256];
	struct sockaddr_ll from;
	socklen_t l = sizeof from;
	ssize_t n = recvfrom(s->fd, buf, sizeof buf - 1, MSG_DONTWAIT, (struct sockaddr *)&from, &l);
	if (n < 0)
		fail("%s: recvfrom: %s", s->name, strerror(errno));
	buf[n] = 0;
	const char *got = raw ? buf + 14 : buf;
	if (n < (raw ? 14 : 0) || strcmp(got, want) || from.sll_ifindex != lo)
		fail("%s: got %zd bytes from %d, %s, want %s", s->name, n, from.sll_ifindex, got, want);
	printf("got %s %s\n", s->name, want);
}

int main(int argc, char **argv) {
	static struct sock socks[8];
	int n = argc - 1;
	if (n < 1 || n > 8)
		fail("usage: packet SOCKET...");
	own_filter[1].k = getpid();
	lo = if_nametoindex("lo");
	if (!lo)
		fail("no lo");
	signal(SIGUSR1, on_usr1);
	printf("ready");
	for (int i = 0; i < n; i++) {
		if (!strcmp(argv[i + 1], "drop")) {
			become_nobody();
			socks[i].kind = IDLE;
			socks[i].fd = -1;
			continue;
		}
		setup(&socks[i], argv[i + 1]);
		printf(" %s=%d", socks[i].name, socks[i].fd);
	}
	printf("\n");
	fflush(stdout);
	int tx = -1;
	for (int i = 0; i < n; i++)
		if (socks[i].kind == SEND)
			tx = socks[i].fd;
	for (long tick = 1;; tick++) {
		nap_ms(PERIOD_MS);
		char payload[32];
		snprintf(payload, sizeof payload, "seq %ld", tick);
		for (int i = 0; i < n; i++) {
			struct sock *s = &socks[i];
			switch (s->kind) {
			case RAW:
				check_raw(s->fd);
				if (serving && tx >= 0) {
					send_frame(tx, ETH_RAW, payload, 1);
					receive(s, payload, 1);
				}
				break;
			case DGRAM:
				check_dgram(s->fd);
				if (serving && tx >= 0) {
					send_frame(tx, ETH_DGRAM, payload, 1);
					receive(s, payload, 0);
				}
				break;
			case SEND:
				check_send(s->fd);
				break;
			default:
				break;
			}
		}
		printf("tick %ld pid=%d ok\n", tick, getpid());
		fflush(stdout);
	}
}
