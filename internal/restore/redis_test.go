package restore_test

import (
	"bufio"
	"fmt"
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
