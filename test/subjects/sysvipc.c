// sysvipc: a subject that uses a System V semaphore set and a message
// queue of its own. It makes the set of 4 semaphores, sets them to 3, 0,
// 7 and 32000 (SETALL) and adds 2 to the second (semop), and the queue,
// into which it sends 5 messages of several types and sizes, one empty
// and one of 5000 bytes; its queue's byte limit is lowered to 10000.
//
// Usage: sysvipc [undo|wait]. undo makes a semop with SEM_UNDO (and
// undoes it at once, which leaves it an undo list), which a dump must
// refuse. wait also makes a second set of one semaphore at 0 and a
// second queue, empty, that nothing has used, and a child that waits
// for the semaphore to be 1 (semop) and then for a message of the queue
// (msgrcv), going on after EINTR, and prints "child got sem" and "child
// got TEXT"; it prints "ready ... waitsem=ID waitmsq=ID child=PID".
//
// It prints "ready semid=ID msqid=ID semkey=KEY msgkey=KEY", then every
// 20 ms "tick N mono_ns=T pid=P ok". On SIGUSR1 it checks the values of
// the set and receives every message, checking each in order, then
// prints "checked sem=V,V,V,V msgs=N" and goes on ticking; on a mismatch
// it prints "FAIL ..." and exits 1.
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"

#define NSEMS 4
#define NMSGS 5
#define BIG 5000

static const unsigned short values[NSEMS] = {3, 2, 7, 32000};

struct message {
	long type;
	size_t len;
	const char *text; // NULL: BIG bytes of a pattern
};

static const struct message messages[NMSGS] = {
	{1, 6, "first"},
	{42, 15, "second message"},
	{1, BIG, NULL},
	{7, 0, ""},
	{3, 5, "last"},
};

static struct {
	long type;
	char text[BIG];
} buf;

static void fill(const struct message *m) {
	buf.type = m->type;
	for (size_t i = 0; i < m->len; i++)
		buf.text[i] = m->text ? m->text[i] : (char)(i * 7 + 1);
}

static volatile sig_atomic_t check;

static void on_usr1(int sig) {
	(void)sig;
	check = 1;
}

static void check_all(int semid, int msqid) {
	unsigned short got[NSEMS];
	if (semctl(semid, 0, GETALL, got) != 0)
		fail("semctl GETALL: %m");
	for (int i = 0; i < NSEMS; i++)
		if (got[i] != values[i])
			fail("semaphore %d is %u, want %u", i, got[i], values[i]);
	for (int i = 0; i < NMSGS; i++) {
		static char want[BIG];
		const struct message *m = &messages[i];
		ssize_t n = msgrcv(msqid, &buf, sizeof(buf.text), 0, IPC_NOWAIT);
		if (n < 0)
			fail("msgrcv message %d: %m", i);
		long type = buf.type;
		memcpy(want, buf.text, n);
		fill(m);
		if (type != m->type || (size_t)n != m->len || memcmp(want, buf.text, n) != 0)
			fail("message %d: type %ld, %zd bytes, want type %ld, %zu bytes, or other text", i, type, n, m->type, m->len);
	}
	if (msgrcv(msqid, &buf, sizeof(buf.text), 0, IPC_NOWAIT) >= 0 || errno != ENOMSG)
		fail("a message more, or %m");
	printf("checked sem=%u,%u,%u,%u msgs=%d\n", values[0], values[1], values[2], values[3], NMSGS);
}

// waiter waits for semaphore 0 of set semid to be 1 and takes it, then
// for a message of queue msqid, going on after EINTR (a semop stopped
// by a stop signal or a dump fails so, handler or not).
static void waiter(int semid, int msqid) {
	struct sembuf take = {.sem_num = 0, .sem_op = -1};
	while (semop(semid, &take, 1) != 0)
		if (errno != EINTR)
			fail("child: semop: %m");
	printf("child got sem\n");
	ssize_t n;
	while ((n = msgrcv(msqid, &buf, sizeof(buf.text) - 1, 0, 0)) < 0)
		if (errno != EINTR)
			fail("child: msgrcv: %m");
	buf.text[n] = 0;
	printf("child got %s\n", buf.text);
	exit(0);
}

int main(int argc, char **argv) {
	int undo = argc > 1 && strcmp(argv[1], "undo") == 0;
	int wait = argc > 1 && strcmp(argv[1], "wait") == 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	key_t semkey = (key_t)(0x5e000000 | (getpid() & 0xffffff));
	key_t msgkey = (key_t)(0x5f000000 | (getpid() & 0xffffff));
	int semid = semget(semkey, NSEMS, IPC_CREAT | IPC_EXCL | 0640);
	int msqid = msgget(msgkey, IPC_CREAT | IPC_EXCL | 0604);
	if (semid < 0 || msqid < 0)
		fail("semget, msgget: %m");
	unsigned short init[NSEMS] = {values[0], 0, values[2], values[3]};
	if (semctl(semid, 0, SETALL, init) != 0)
		fail("semctl SETALL: %m");
	struct sembuf add = {.sem_num = 1, .sem_op = 2};
	if (semop(semid, &add, 1) != 0)
		fail("semop: %m");
	if (undo) {
		struct sembuf ops[2] = {{.sem_num = 0, .sem_op = 1, .sem_flg = SEM_UNDO}, {.sem_num = 0, .sem_op = -1, .sem_flg = SEM_UNDO}};
		if (semop(semid, ops, 2) != 0)
			fail("semop SEM_UNDO: %m");
	}
	for (int i = 0; i < NMSGS; i++) {
		fill(&messages[i]);
		if (msgsnd(msqid, &buf, messages[i].len, IPC_NOWAIT) != 0)
			fail("msgsnd %d: %m", i);
	}
	struct msqid_ds ds;
	if (msgctl(msqid, IPC_STAT, &ds) != 0)
		fail("msgctl IPC_STAT: %m");
	ds.msg_qbytes = 10000;
	if (msgctl(msqid, IPC_SET, &ds) != 0)
		fail("msgctl IPC_SET: %m");
	int waitsem = -1, waitmsq = -1;
	pid_t child = 0;
	if (wait) {
		waitsem = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
		waitmsq = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
		if (waitsem < 0 || waitmsq < 0)
			fail("semget, msgget: %m");
		child = fork();
		if (child < 0)
			fail("fork: %m");
		if (child == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			waiter(waitsem, waitmsq);
		}
	}
	signal(SIGUSR1, on_usr1);
	printf("ready semid=%d msqid=%d semkey=%u msgkey=%u waitsem=%d waitmsq=%d child=%d\n", semid, msqid, (unsigned)semkey,
	       (unsigned)msgkey, waitsem, waitmsq, (int)child);
	for (unsigned long tick = 0;; tick++) {
		if (check) {
			check = 0;
			check_all(semid, msqid);
		}
		struct timespec m;
		clock_gettime(CLOCK_MONOTONIC, &m);
		printf("tick %lu mono_ns=%lld pid=%d ok\n", tick, m.tv_sec * 1000000000LL + m.tv_nsec, getpid());
		struct timespec d = {0, 20 * 1000000L};
		nanosleep(&d, NULL);
	}
}
