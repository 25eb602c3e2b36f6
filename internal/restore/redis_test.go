package restore_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/restore"
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
	redis, err := exec.LookPath("redis-server")
	if err != nil {
		if testing.Short() {
			t.Skip("redis-server not installed")
		}
		t.Fatal("redis-server not found: run `make test`, which installs it (Debian package redis-server), or use -short")
	}
	unlockKeptAtCleanup(t)
	// A free port.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	s := &subject{Subject: testutil.StartSubject(t, "/bin/sh", "-c", `echo ready; exec "$0" "$@"`, redis,
		"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--dir", dir, "--daemonize", "no")}
	var client net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; {
		if client, err = net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis does not listen on %d: %v\n%s", port, err, s.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer client.Close()
	cr := bufio.NewReader(client)
	if got := redisCommand(t, client, cr, "SET", "before", "the dump"); got != "+OK" {
		t.Fatalf("SET: %q", got)
	}

	images := filepath.Join(t.TempDir(), "images")
	log, buf := newLog()
	if _, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: images, Log: log}); err != nil {
		t.Fatalf("dump redis: %v\nlog:\n%s", err, buf)
	}
	s.ReapDumped(t)
	restoreSubject(t, s, &checkpoint{dir: images}, restore.Options{})

	// The idle client's connection, kept.
	if got := redisCommand(t, client, cr, "GET", "before"); got != "the dump" {
		t.Errorf("GET on the old connection: %q, want %q", got, "the dump")
	}
	if got := redisCommand(t, client, cr, "SET", "after", "the restore"); got != "+OK" {
		t.Errorf("SET on the old connection: %q", got)
	}
	// A new client.
	c2, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	r2 := bufio.NewReader(c2)
	for k, want := range map[string]string{"before": "the dump", "after": "the restore"} {
		if got := redisCommand(t, c2, r2, "GET", k); got != want {
			t.Errorf("GET %s on a new connection: %q, want %q", k, got, want)
		}
	}
}
