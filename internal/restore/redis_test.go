package restore_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cryo-cr/cryo/internal/testutil"
)

// redisCommand sends a command on c in RESP and returns the reply's
// first line and, for a bulk string, its value.
func redisCommand(t *testing.T, c net.Conn, r *bufio.Reader, args ...string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(b.String())); err != nil {
		t.Fatalf("redis %v: %v", args, err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("redis %v: %v", args, err)
	}
	if strings.HasPrefix(line, "$") && line != "$-1\r\n" {
		v, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("redis %v: %v", args, err)
		}
		return strings.TrimSpace(v)
	}
	return strings.TrimSpace(line)
}

// TestRestoreRedis checkpoints redis-server, a real program (threads,
// epoll, a listener), with an idle client connected over TCP, and
// restores it: the client sends a command on its old connection and
// gets its answer, and a new client reads what was set before the dump.
func TestRestoreRedis(t *testing.T) {
	testutil.RequireRoot(t)
	redis := program(t, "redis-server", "redis-server")
	unlockKeptAtCleanup(t)
	port := freePort(t)
	s := startProgram(t, redis, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--dir", t.TempDir(), "--daemonize", "no")
	client := dialProgram(t, s, port)
	cr := bufio.NewReader(client)
	if got := redisCommand(t, client, cr, "SET", "before", "the dump"); got != "+OK" {
		t.Fatalf("SET: %q", got)
	}

	dumpRestoreProgram(t, s)

	// The idle client's connection, kept.
	if got := redisCommand(t, client, cr, "GET", "before"); got != "the dump" {
		t.Errorf("GET on the old connection: %q, want %q", got, "the dump")
	}
	if got := redisCommand(t, client, cr, "SET", "after", "the restore"); got != "+OK" {
		t.Errorf("SET on the old connection: %q", got)
	}
	// A new client.
	c2 := dialProgram(t, s, port)
	r2 := bufio.NewReader(c2)
	for k, want := range map[string]string{"before": "the dump", "after": "the restore"} {
		if got := redisCommand(t, c2, r2, "GET", k); got != want {
			t.Errorf("GET %s on a new connection: %q, want %q", k, got, want)
		}
	}
}

// TestRestoreRedisSaving checkpoints redis-server while its child saves
// the data to disk (BGSAVE, slowed by rdb-key-save-delay): the child has
// closed the sockets the epoll it shares with redis watches. Both come
// back; the child finishes the save, redis reaps it and reports it a
// success, and the saved file holds every key.
func TestRestoreRedisSaving(t *testing.T) {
	testutil.RequireRoot(t)
	redis := program(t, "redis-server", "redis-server")
	port := freePort(t)
	dir := t.TempDir()
	const keys = 500 // saved in a second: 2 ms each
	// Two listeners, which the child closes: the number of the first it
	// gives to the file it saves to, the second's it leaves closed.
	s := startProgram(t, redis, "--port", fmt.Sprint(port), "--bind", "127.0.0.1 ::1", "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--dir", dir, "--daemonize", "no", "--rdb-key-save-delay", "2000")
	c := dialProgram(t, s, port)
	r := bufio.NewReader(c)
	for i := range keys {
		if got := redisCommand(t, c, r, "SET", fmt.Sprint("key", i), fmt.Sprint("value", i)); got != "+OK" {
			t.Fatalf("SET: %q", got)
		}
	}
	c.Close()
	c = dialProgram(t, s, port)
	r = bufio.NewReader(c)
	if got := redisCommand(t, c, r, "BGSAVE"); !strings.Contains(got, "started") {
		t.Fatalf("BGSAVE: %q", got)
	}
	c.Close()
	child := waitChildren(t, s.Pid, 1)

	if pids := dumpRestoreProgram(t, s, child...); len(pids) != 2 {
		t.Fatalf("dumped pids %v, want redis and its child", pids)
	}

	c = dialProgram(t, s, port)
	r = bufio.NewReader(c)
	info := func() string {
		t.Helper()
		fmt.Fprintf(c, "INFO persistence\r\n")
		c.SetDeadline(time.Now().Add(10 * time.Second))
		head, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		var n int
		fmt.Sscanf(head, "$%d", &n)
		body := make([]byte, n+2)
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatal(err)
		}
		return string(body)
	}
	for deadline := time.Now().Add(testutil.SubjectTimeout); strings.Contains(info(), "rdb_bgsave_in_progress:1"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the save is still in progress after %v", testutil.SubjectTimeout)
		}
	}
	if in := info(); !strings.Contains(in, "rdb_last_bgsave_status:ok") {
		t.Fatalf("the save did not succeed:\n%s", in)
	}
	if got := redisCommand(t, c, r, "DBSIZE"); got != fmt.Sprint(":", keys) {
		t.Errorf("DBSIZE: %q, want %d keys", got, keys)
	}
	// The saved file, loaded by a redis of its own, holds every key.
	port2 := freePort(t)
	s2 := startProgram(t, redis, "--port", fmt.Sprint(port2), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--dir", dir, "--daemonize", "no")
	c2 := dialProgram(t, s2, port2)
	r2 := bufio.NewReader(c2)
	if got := redisCommand(t, c2, r2, "DBSIZE"); got != fmt.Sprint(":", keys) {
		t.Errorf("the saved file holds %q keys, want %d", got, keys)
	}
	if got := redisCommand(t, c2, r2, "GET", "key7"); got != "value7" {
		t.Errorf("GET key7 from the saved file: %q", got)
	}
}
