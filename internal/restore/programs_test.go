package restore_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// Real programs, checkpointed and restored with their sockets: redis
// (redis_test.go), a Python HTTP server, nginx's master and workers, and
// a Java program. Each is installed by `make test` (its deps step).

// program returns the path of a program a test runs: a name looked up in
// PATH, or an absolute path. `make test` installs it (Debian package
// pkg); without it the test fails, or skips with -short.
func program(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if testing.Short() {
			t.Skipf("%s not installed", name)
		}
		t.Fatalf("%s not found: run `make test`, which installs it (Debian package %s), or use -short", name, pkg)
	}
	return path
}

// startProgram starts a program that prints no ready line of its own as a
// subject: a shell says it is ready and becomes the program.
func startProgram(t *testing.T, path string, args ...string) *subject {
	t.Helper()
	return &subject{Subject: testutil.StartSubject(t, "/bin/sh", append([]string{"-c", `echo ready; exec "$0" "$@"`, path}, args...)...)}
}

// freePort returns a TCP port of 127.0.0.1 that nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// dialProgram connects to 127.0.0.1:port, waiting for s to listen there;
// the connection is closed when the test ends.
func dialProgram(t *testing.T, s *subject, port int) net.Conn {
	t.Helper()
	for deadline := time.Now().Add(testutil.SubjectTimeout); ; {
		c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		if time.Now().After(deadline) || !s.Alive() {
			t.Fatalf("pid %d does not listen on %d: %v\n%s", s.Pid, port, err, s.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dumpRestoreProgram checkpoints s and the processes under it, which the
// dump kills, and restores them: the state oracle compares the root with
// what it was. It returns the PIDs of the checkpoint, the root first.
func dumpRestoreProgram(t *testing.T, s *subject) []int {
	t.Helper()
	c := &checkpoint{dir: filepath.Join(t.TempDir(), "images")}
	log, buf := newLog()
	opts := dump.Options{Pid: s.Pid, Dir: c.dir, Log: log, Frozen: func() { c.before = testutil.RecordState(t, s.Pid) }}
	if _, err := dump.Dump(context.Background(), opts); err != nil {
		t.Fatalf("dump pid %d: %v\nlog:\n%s", s.Pid, err, buf)
	}
	pids := testutil.DumpedPids(t, c.dir)
	s.ReapDumped(t)
	if err := testutil.WaitPidsFree(pids...); err != nil {
		t.Fatal(err)
	}
	testutil.KillPidsAtCleanup(t, pids[1:]...)
	restoreSubject(t, s, c, restore.Options{})
	return pids
}

// httpGet sends a GET for path on c, an HTTP/1.1 connection kept open,
// and returns the body of the answer.
func httpGet(t *testing.T, c net.Conn, r *bufio.Reader, path string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+c.RemoteAddr().String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := req.Write(c); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp, err := http.ReadResponse(r, req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("GET %s: %s, closing %v, %q (%v)", path, resp.Status, resp.Close, body, err)
	}
	return string(body)
}

// TestRestorePythonHTTP checkpoints a Python HTTP/1.1 server
// (test/subjects/httpserver.py: http.server, a thread per connection)
// with a keep-alive client connected from outside the checkpoint: after
// the restore the client's next request on the same connection is
// answered, counted after the one before the dump, and so is a new
// client's.
func TestRestorePythonHTTP(t *testing.T) {
	testutil.RequireRoot(t)
	// Not the python3 of PATH, which may be a pyenv shim.
	python := program(t, "/usr/bin/python3", "python3")
	unlockKeptAtCleanup(t)
	port := freePort(t)
	s := &subject{Subject: testutil.StartSubject(t, python,
		filepath.Join(testutil.ModuleRoot(t), "test", "subjects", "httpserver.py"), fmt.Sprint(port))}
	c := dialProgram(t, s, port)
	r := bufio.NewReader(c)
	if got, want := httpGet(t, c, r, "/before"), "request 1 path /before\n"; got != want {
		t.Fatalf("before the dump: %q, want %q", got, want)
	}

	dumpRestoreProgram(t, s)

	if got, want := httpGet(t, c, r, "/after"), "request 2 path /after\n"; got != want {
		t.Errorf("on the kept connection: %q, want %q", got, want)
	}
	c2 := dialProgram(t, s, port)
	if got, want := httpGet(t, c2, bufio.NewReader(c2), "/new"), "request 3 path /new\n"; got != want {
		t.Errorf("on a new connection: %q, want %q", got, want)
	}
}
