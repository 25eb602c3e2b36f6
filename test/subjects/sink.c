// sink: the "kitchen sink" checkpoint/restore subject. It holds at once
// every kind of state a dump must capture and a restore must give back,
// and checks every tick all of it that it can check without changing it
// (not the PROT_NONE area, say), so it serves the dump's tests (which
// read the images) and the restore's (which watch it go on).
//
// Usage: sink DIR [socket] [child] [churn] [big=MIB]
//   DIR     an existing directory for the files it creates and maps
//   socket  also hold a UDP-Lite socket (a kind of fd a dump refuses)
//   child   also have a child process (a dump refuses process trees)
//   churn   also start and end short-lived threads all the time
//   big=N   also hold N MiB of touched anonymous memory
//
// Once set up it prints one line of key=value fields, the addresses,
// descriptors and thread ids the tests look for in the images:
//   ready pattern=0xADDR untouched=0xADDR ... reg=FD ... reader_tid=TID ...
// then every PERIOD_MS:
//   tick N mono_ns=T pid=P usr1=K reader=R sleeper=S spinner=C ok
// usr1 counts the SIGUSR1s handled, reader/sleeper/spinner the loops of
// its three threads. On any check that fails it prints "FAIL <what>" and
// exits 1.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define PERIOD_MS 20
#define PAGE 4096
// CHECK_EVERY is how many ticks each thread has to show progress in.
#define CHECK_EVERY 25

#define ANON_PAGES 64 // of which the first ANON_TOUCHED hold the pattern
#define ANON_TOUCHED 32
#define UNTOUCHED_BYTES (64 << 20)
#define FILE_PAGES 8
#define GUARD_PAGES 4
#define MADV_PAGES 8
#define HEAP_BYTES (64 << 10)
#define SBRK_BYTES (2 * PAGE)
#define ALTSTACK_BYTES (64 << 10)
#define REG_POS 1234
#define ITIMER_SEC 3600

// The seeds of the memory patterns (see fill); the tests use the same.
#define SEED_ANON 0xa11ce000u
#define SEED_SHARED 0x5a4ed000u
#define SEED_FILE 0xf11e0000u
#define SEED_COW 0xc0c00000u
#define SEED_GUARD 0x6a4d0000u
#define SEED_DONTFORK 0xd0f00000u
#define SEED_HUGE 0x4a6e0000u
#define SEED_NOHUGE 0x404a0000u
#define SEED_WIPE 0x3b1e0000u
#define SEED_HEAP 0x4ea90000u
#define SEED_SBRK 0x5b4c0000u

// The private file mapping's pages that are written to, and so copied
// on write; the others are only read.
static const int cow_pages[] = {1, 5};

static const char ghost_data[] = "the contents of a file that was unlinked while open\n";
static const char pipe_data[] = "unread data in a pipe";
static const char fifo_data[] = "unread data in a FIFO";

static void *xmmap(size_t len, int prot, int flags, int fd) {
	void *p = mmap(NULL, len, prot, flags, fd, 0);
	if (p == MAP_FAILED)
		fail("mmap %zu bytes: %s", len, strerror(errno));
	return p;
}

static void xmadvise(void *p, size_t len, int advice, const char *name) {
	if (madvise(p, len, advice) != 0)
		fail("madvise %s: %s", name, strerror(errno));
}

// fill writes the pattern of seed: 32-bit word i holds i*2654435761^seed.
static void fill(void *p, size_t len, uint32_t seed) {
	uint32_t *w = p;
	for (size_t i = 0; i < len / 4; i++)
		w[i] = (uint32_t)(i * 2654435761u) ^ seed;
}

static void check(const char *what, const void *p, size_t len, uint32_t seed) {
	const uint32_t *w = p;
	for (size_t i = 0; i < len / 4; i++)
		if (w[i] != ((uint32_t)(i * 2654435761u) ^ seed))
			fail("memory %s: word %zu is %#x", what, i, w[i]);
}

// make_file creates path with the pattern of seed in len bytes.
static int make_file(const char *path, size_t len, uint32_t seed) {
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		fail("create %s: %s", path, strerror(errno));
	void *buf = malloc(len);
	fill(buf, len, seed);
	if (write(fd, buf, len) != (ssize_t)len)
		fail("write %s: %s", path, strerror(errno));
	free(buf);
	return fd;
}

static int xopen(const char *path, int flags) {
	int fd = open(path, flags, 0600);
	if (fd < 0)
		fail("open %s: %s", path, strerror(errno));
	return fd;
}

static void xwrite(int fd, const void *p, size_t len, const char *what) {
	if (write(fd, p, len) != (ssize_t)len)
		fail("write %s: %s", what, strerror(errno));
}

static long long mono_ns(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

// The memory, files and threads the loop checks.
static uint8_t *anon, *shared_map, *private_map, *guard, *dontfork, *huge, *nohuge, *wipe, *heap, *brk_area;
static int reg_fd, dir_fd, ghost_fd, pipe_fds[2], fifo_fd, null_fd, zero_fd, urandom_fd, wake_fds[2];
static void *altstack;

static volatile sig_atomic_t usr1;
static atomic_ulong reader_n, sleeper_n, spinner_n;
// started holds main back until every thread runs, its name, signal mask
// and rseq registration set: a dump right after "ready" must see them.
static pthread_barrier_t started;
// The threads' TIDs, for the ready line.
static pid_t reader_tid, sleeper_tid, spinner_tid, churner_tid;

static void on_usr1(int sig, siginfo_t *si, void *uc) {
	(void)sig;
	(void)si;
	(void)uc;
	usr1++;
}

// sleep_ms sleeps; a handler may cut the sleep short (EINTR), nothing
// else may: a tracer that put registers back wrongly shows up here as an
// odd errno (516 is a leaked ERESTART_RESTARTBLOCK). The rest is then
// slept, so that a tick lasts PERIOD_MS under a storm of signals too
// (TestDumpUnderSignals), which gives the other threads that long to show
// progress.
static void sleep_ms(long ms, const char *who) {
	struct timespec d = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&d, &d) != 0)
		if (errno != EINTR)
			fail("%s nanosleep: errno %d", who, errno);
}

// reader waits in read() on a pipe that is empty but for the byte the main
// loop writes every tick. With SA_RESTART nothing may interrupt the read.
static void *reader(void *arg) {
	(void)arg;
	pthread_setname_np(pthread_self(), "reader");
	reader_tid = gettid();
	pthread_barrier_wait(&started);
	for (;;) {
		char b[64];
		ssize_t n = read(wake_fds[0], b, sizeof b);
		if (n <= 0)
			fail("reader read: %zd, errno %d", n, errno);
		atomic_fetch_add(&reader_n, 1);
	}
	return NULL;
}

static void *sleeper(void *arg) {
	(void)arg;
	pthread_setname_np(pthread_self(), "sleeper");
	sleeper_tid = gettid();
	pthread_barrier_wait(&started);
	for (;;) {
		sleep_ms(5, "sleeper");
		atomic_fetch_add(&sleeper_n, 1);
	}
	return NULL;
}

// spinner calls clock_gettime in a loop, so that it is inside the vDSO
// most of the time, with short naps to leave the CPU to others.
static void *spinner(void *arg) {
	(void)arg;
	pthread_setname_np(pthread_self(), "spinner");
	spinner_tid = gettid();
	pthread_barrier_wait(&started);
	long long last = 0;
	for (;;) {
		long long until = mono_ns() + 4000000;
		for (long long now = 0; now < until;) {
			now = mono_ns();
			if (now < last)
				fail("spinner: monotonic clock went back from %lld to %lld", last, now);
			last = now;
		}
		atomic_fetch_add(&spinner_n, 1);
		sleep_ms(1, "spinner");
	}
	return NULL;
}

static void *nothing(void *arg) { return arg; }

// churner starts and joins threads without end: the thread list of the
// process changes all the time.
static void *churner(void *arg) {
	(void)arg;
	pthread_setname_np(pthread_self(), "churner");
	churner_tid = gettid();
	pthread_barrier_wait(&started);
	for (;;) {
		pthread_t t[4];
		for (int i = 0; i < 4; i++) {
			int err = pthread_create(&t[i], NULL, nothing, NULL);
			if (err != 0)
				fail("churner pthread_create: %s", strerror(err));
		}
		for (int i = 0; i < 4; i++)
			pthread_join(t[i], NULL);
	}
	return NULL;
}

static void start_thread(void *(*f)(void *)) {
	pthread_t t;
	int err = pthread_create(&t, NULL, f, NULL);
	if (err != 0)
		fail("pthread_create: %s", strerror(err));
}

static void check_fd_data(const char *what, int fd, size_t want) {
	int n = -1;
	if (ioctl(fd, FIONREAD, &n) != 0 || n != (int)want)
		fail("%s holds %d bytes, want %zu", what, n, want);
}

static void check_all(void) {
	check("anon", anon, ANON_TOUCHED * PAGE, SEED_ANON);
	check("shared file mapping", shared_map, FILE_PAGES * PAGE, SEED_SHARED);
	for (int i = 0; i < FILE_PAGES; i++) {
		uint32_t seed = SEED_FILE;
		for (size_t j = 0; j < sizeof cow_pages / sizeof cow_pages[0]; j++)
			if (cow_pages[j] == i)
				seed = SEED_COW;
		// The file's pattern continues across pages; COW pages restart it.
		if (seed == SEED_FILE) {
			const uint32_t *w = (const uint32_t *)(private_map + i * PAGE);
			for (size_t k = 0; k < PAGE / 4; k++) {
				size_t idx = i * PAGE / 4 + k;
				if (w[k] != ((uint32_t)(idx * 2654435761u) ^ SEED_FILE))
					fail("memory private file mapping: page %d word %zu is %#x", i, k, w[k]);
			}
		} else {
			check("private file mapping (copied on write)", private_map + i * PAGE, PAGE, seed);
		}
	}
	check("dontfork", dontfork, MADV_PAGES * PAGE, SEED_DONTFORK);
	check("hugepage", huge, PAGE, SEED_HUGE);
	check("nohugepage", nohuge, MADV_PAGES * PAGE, SEED_NOHUGE);
	check("wipeonfork", wipe, MADV_PAGES * PAGE, SEED_WIPE);
	check("heap", heap, HEAP_BYTES, SEED_HEAP);
	check("sbrk", brk_area, SBRK_BYTES, SEED_SBRK);

	off_t pos = lseek(reg_fd, 0, SEEK_CUR);
	if (pos != REG_POS)
		fail("regular file at position %lld, want %d", (long long)pos, REG_POS);
	struct stat st;
	if (fstat(dir_fd, &st) != 0 || !S_ISDIR(st.st_mode))
		fail("directory fd is not a directory");
	char buf[sizeof ghost_data];
	if (pread(ghost_fd, buf, sizeof ghost_data - 1, 0) != (ssize_t)sizeof ghost_data - 1 ||
	    memcmp(buf, ghost_data, sizeof ghost_data - 1) != 0)
		fail("unlinked file contents");
	if (fstat(ghost_fd, &st) != 0 || st.st_nlink != 0)
		fail("unlinked file has %ld links", (long)st.st_nlink);
	check_fd_data("pipe", pipe_fds[0], sizeof pipe_data - 1);
	check_fd_data("FIFO", fifo_fd, sizeof fifo_data - 1);
	uint64_t z = 1;
	if (read(zero_fd, &z, sizeof z) != sizeof z || z != 0)
		fail("read /dev/zero");
	if (write(null_fd, &z, sizeof z) != sizeof z)
		fail("write /dev/null");
	if (read(urandom_fd, &z, sizeof z) != sizeof z)
		fail("read /dev/urandom");

	struct sigaction sa;
	if (sigaction(SIGUSR1, NULL, &sa) != 0 || !(sa.sa_flags & SA_SIGINFO) || sa.sa_sigaction != on_usr1 ||
	    !(sa.sa_flags & SA_RESTART))
		fail("SIGUSR1 action lost");
	if (sigaction(SIGPIPE, NULL, &sa) != 0 || sa.sa_handler != SIG_IGN)
		fail("SIGPIPE no longer ignored");
	sigset_t mask;
	if (sigprocmask(SIG_BLOCK, NULL, &mask) != 0 || !sigismember(&mask, SIGUSR2) || sigismember(&mask, SIGUSR1))
		fail("signal mask lost");
	stack_t ss;
	if (sigaltstack(NULL, &ss) != 0 || ss.ss_sp != altstack || ss.ss_size != ALTSTACK_BYTES || (ss.ss_flags & SS_DISABLE))
		fail("sigaltstack lost");
	struct itimerval it;
	if (getitimer(ITIMER_REAL, &it) != 0 || it.it_interval.tv_sec != ITIMER_SEC ||
	    (it.it_value.tv_sec == 0 && it.it_value.tv_usec == 0))
		fail("interval timer lost: interval %lds, value %lds", (long)it.it_interval.tv_sec,
		     (long)it.it_value.tv_sec);
}

int main(int argc, char **argv) {
	static char outbuf[4096]; // not malloc'ed: the heap must not move after "ready"
	setvbuf(stdout, outbuf, _IOLBF, sizeof outbuf);
	if (argc < 2)
		fail("usage: sink DIR [socket] [child] [churn] [big=MIB]");
	const char *dir = argv[1];
	int want_socket = 0, want_child = 0, want_churn = 0;
	long big_mib = 0;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "socket") == 0)
			want_socket = 1;
		else if (strcmp(argv[i], "child") == 0)
			want_child = 1;
		else if (strcmp(argv[i], "churn") == 0)
			want_churn = 1;
		else if (strncmp(argv[i], "big=", 4) == 0)
			big_mib = atol(argv[i] + 4);
		else
			fail("unknown argument %s", argv[i]);
	}
	char path[4096];

	// Anonymous private memory: the first pages touched, the rest not;
	// and a large area never touched at all.
	anon = xmmap(ANON_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	fill(anon, ANON_TOUCHED * PAGE, SEED_ANON);
	uint8_t *untouched =
	    xmmap(UNTOUCHED_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1);

	// File mappings: a shared one, written through; a private one, read
	// everywhere and written (so copied) in a few pages.
	snprintf(path, sizeof path, "%s/shared.dat", dir);
	int fd = make_file(path, FILE_PAGES * PAGE, SEED_SHARED);
	shared_map = xmmap(FILE_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
	close(fd);
	fill(shared_map, FILE_PAGES * PAGE, SEED_SHARED);
	snprintf(path, sizeof path, "%s/private.dat", dir);
	fd = make_file(path, FILE_PAGES * PAGE, SEED_FILE);
	private_map = xmmap(FILE_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd);
	close(fd);
	volatile uint8_t sum = 0;
	for (int i = 0; i < FILE_PAGES; i++)
		sum += private_map[i * PAGE];
	for (size_t j = 0; j < sizeof cow_pages / sizeof cow_pages[0]; j++)
		fill(private_map + cow_pages[j] * PAGE, PAGE, SEED_COW);

	// A guard area that held data before it became inaccessible.
	guard = xmmap(GUARD_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	fill(guard, GUARD_PAGES * PAGE, SEED_GUARD);
	if (mprotect(guard, GUARD_PAGES * PAGE, PROT_NONE) != 0)
		fail("mprotect: %s", strerror(errno));

	// Areas with madvise bits.
	dontfork = xmmap(MADV_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	xmadvise(dontfork, MADV_PAGES * PAGE, MADV_DONTFORK, "DONTFORK");
	fill(dontfork, MADV_PAGES * PAGE, SEED_DONTFORK);
	huge = xmmap(MADV_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	xmadvise(huge, MADV_PAGES * PAGE, MADV_HUGEPAGE, "HUGEPAGE");
	fill(huge, PAGE, SEED_HUGE);
	nohuge = xmmap(MADV_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	xmadvise(nohuge, MADV_PAGES * PAGE, MADV_NOHUGEPAGE, "NOHUGEPAGE");
	fill(nohuge, MADV_PAGES * PAGE, SEED_NOHUGE);
	wipe = xmmap(MADV_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	xmadvise(wipe, MADV_PAGES * PAGE, MADV_WIPEONFORK, "WIPEONFORK");
	fill(wipe, MADV_PAGES * PAGE, SEED_WIPE);

	uint8_t *big = NULL;
	if (big_mib > 0) {
		big = xmmap((size_t)big_mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
		for (size_t off = 0; off < (size_t)big_mib << 20; off += PAGE)
			big[off] = (uint8_t)(off / PAGE) | 1;
	}

	// Files: a regular file at a known position, a directory, an unlinked
	// file, a pipe and a FIFO holding data, character devices.
	snprintf(path, sizeof path, "%s/reg.txt", dir);
	reg_fd = xopen(path, O_RDWR | O_CREAT | O_TRUNC);
	char zeros[2 * REG_POS] = {0};
	xwrite(reg_fd, zeros, sizeof zeros, "regular file");
	if (lseek(reg_fd, REG_POS, SEEK_SET) != REG_POS)
		fail("lseek: %s", strerror(errno));
	dir_fd = xopen(dir, O_RDONLY | O_DIRECTORY);
	snprintf(path, sizeof path, "%s/ghost.txt", dir);
	ghost_fd = xopen(path, O_RDWR | O_CREAT | O_TRUNC);
	xwrite(ghost_fd, ghost_data, sizeof ghost_data - 1, "unlinked file");
	if (unlink(path) != 0)
		fail("unlink %s: %s", path, strerror(errno));
	if (pipe(pipe_fds) != 0 || pipe(wake_fds) != 0)
		fail("pipe: %s", strerror(errno));
	xwrite(pipe_fds[1], pipe_data, sizeof pipe_data - 1, "pipe");
	snprintf(path, sizeof path, "%s/fifo", dir);
	if (mkfifo(path, 0600) != 0)
		fail("mkfifo %s: %s", path, strerror(errno));
	fifo_fd = xopen(path, O_RDWR); // O_RDWR does not wait for a peer
	xwrite(fifo_fd, fifo_data, sizeof fifo_data - 1, "FIFO");
	null_fd = xopen("/dev/null", O_RDWR);
	zero_fd = xopen("/dev/zero", O_RDONLY);
	urandom_fd = xopen("/dev/urandom", O_RDONLY);
	int sock_fd = -1;
	if (want_socket && (sock_fd = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE)) < 0)
		fail("socket: %s", strerror(errno));

	// Signals.
	struct sigaction sa = {.sa_sigaction = on_usr1, .sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		fail("sigaction SIGUSR1: %s", strerror(errno));
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		fail("ignore SIGPIPE: %s", strerror(errno));
	altstack = xmmap(ALTSTACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	stack_t ss = {.ss_sp = altstack, .ss_size = ALTSTACK_BYTES};
	if (sigaltstack(&ss, NULL) != 0)
		fail("sigaltstack: %s", strerror(errno));
	struct itimerval it = {{ITIMER_SEC, 0}, {ITIMER_SEC, 0}};
	if (setitimer(ITIMER_REAL, &it, NULL) != 0)
		fail("setitimer: %s", strerror(errno));

	int child = 0;
	if (want_child) {
		pid_t parent = getpid();
		child = fork();
		if (child < 0)
			fail("fork: %s", strerror(errno));
		if (child == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(0);
			for (;;)
				pause();
		}
	}

	// Threads, then SIGUSR2 blocked in the main thread only: each thread
	// has its own mask.
	pthread_barrier_init(&started, NULL, 4 + want_churn);
	start_thread(reader);
	start_thread(sleeper);
	start_thread(spinner);
	if (want_churn)
		start_thread(churner);
	pthread_barrier_wait(&started);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR2);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0)
		fail("sigprocmask: %s", strerror(errno));

	// The heap last: the allocations above (thread stacks are mmap'ed,
	// but their TLS is not) may move the break.
	heap = malloc(HEAP_BYTES);
	fill(heap, HEAP_BYTES, SEED_HEAP);
	brk_area = sbrk(SBRK_BYTES);
	if (brk_area == (void *)-1)
		fail("sbrk: %s", strerror(errno));
	fill(brk_area, SBRK_BYTES, SEED_SBRK);

	check_all();
#define A(p) ((unsigned long)(uintptr_t)(p))
	printf("ready pattern=%#lx anon=%#lx untouched=%#lx untouched_len=%d shared=%#lx private=%#lx guard=%#lx "
	       "dontfork=%#lx huge=%#lx nohuge=%#lx wipe=%#lx big=%#lx heap=%#lx sbrk=%#lx brk=%#lx altstack=%#lx "
	       "reg=%d dir=%d ghost=%d pipe_r=%d pipe_w=%d fifo=%d null=%d zero=%d urandom=%d socket=%d child=%d pid=%d "
	       "reader_tid=%d sleeper_tid=%d spinner_tid=%d churner_tid=%d\n",
	       A(anon), A(anon), A(untouched), UNTOUCHED_BYTES, A(shared_map), A(private_map), A(guard), A(dontfork),
	       A(huge), A(nohuge), A(wipe), A(big), A(heap), A(brk_area), A(sbrk(0)), A(altstack), reg_fd, dir_fd,
	       ghost_fd, pipe_fds[0], pipe_fds[1], fifo_fd, null_fd, zero_fd, urandom_fd, sock_fd, child, getpid(),
	       reader_tid, sleeper_tid, spinner_tid, churner_tid);

	long long last = 0;
	unsigned long seen[3] = {0, 0, 0};
	for (unsigned long tick = 0;; tick++) {
		check_all();
		xwrite(wake_fds[1], "x", 1, "wake pipe");
		unsigned long now[3] = {atomic_load(&reader_n), atomic_load(&sleeper_n), atomic_load(&spinner_n)};
		if (tick % CHECK_EVERY == 0) {
			// Each thread had CHECK_EVERY ticks to make progress; the
			// first check only takes the counts.
			static const char *names[] = {"reader", "sleeper", "spinner"};
			for (int i = 0; tick > 0 && i < 3; i++)
				if (now[i] == seen[i])
					fail("thread %s stuck at %lu", names[i], now[i]);
			memcpy(seen, now, sizeof seen);
		}
		long long m = mono_ns();
		if (m < last)
			fail("monotonic clock went back from %lld to %lld", last, m);
		last = m;
		printf("tick %lu mono_ns=%lld pid=%d usr1=%d reader=%lu sleeper=%lu spinner=%lu ok\n", tick, m, getpid(),
		       (int)usr1, now[0], now[1], now[2]);
		sleep_ms(PERIOD_MS, "main");
	}
}
