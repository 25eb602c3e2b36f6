package restore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
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

// waitAccepted waits until the TCP listener of 127.0.0.1:port has no
// connection waiting to be accepted: /proc/net/tcp shows the length of
// a listener's accept queue as its rx_queue.
func waitAccepted(t *testing.T, port int) {
	t.Helper()
	local := fmt.Sprintf("0100007F:%04X", port)
	for deadline := time.Now().Add(testutil.SubjectTimeout); ; {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			t.Fatal(err)
		}
		waiting := ""
		for line := range strings.Lines(string(b)) {
			// sl local_address rem_address st tx_queue:rx_queue ...
			if f := strings.Fields(line); len(f) > 4 && f[1] == local && f[3] == "0A" {
				waiting = f[4][strings.IndexByte(f[4], ':')+1:]
			}
		}
		if waiting == "00000000" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the listener of port %d: accept queue %q", port, waiting)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dumpRestoreProgram checkpoints s and the processes under it, which the
// dump kills, and restores them: the state oracle compares the root, and
// the processes others of the tree, with what they were. It returns the
// PIDs of the checkpoint, the root first.
func dumpRestoreProgram(t *testing.T, s *subject, others ...int) []int {
	t.Helper()
	c := &checkpoint{dir: filepath.Join(t.TempDir(), "images")}
	states := map[int]testutil.State{}
	log, buf := newLog()
	opts := dump.Options{Pid: s.Pid, Dir: c.dir, Log: log, Frozen: func() {
		c.before = testutil.RecordState(t, s.Pid)
		for _, pid := range others {
			states[pid] = testutil.RecordState(t, pid)
		}
	}}
	if _, err := dump.Dump(context.Background(), opts); err != nil {
		t.Fatalf("dump pid %d: %v\nlog:\n%s", s.Pid, err, buf)
	}
	pids := testutil.DumpedPids(t, c.dir)
	s.ReapDumped(t)
	if err := testutil.WaitPidsFree(pids...); err != nil {
		t.Fatal(err)
	}
	testutil.KillPidsAtCleanup(t, pids[1:]...)
	restoreSubject(t, s, c, restore.Options{Restored: func(pid int, scratchStart, scratchEnd uint64) {
		if want, ok := states[pid]; ok {
			t.Logf("state oracle of pid %d", pid)
			testutil.CompareStates(t, want, testutil.RecordState(t, pid, scratchStart, scratchEnd))
		}
	}})
	return pids
}

// waitChildren waits until process pid has n children, and returns them.
func waitChildren(t *testing.T, pid, n int) []int {
	t.Helper()
	for deadline := time.Now().Add(testutil.SubjectTimeout); ; {
		pids, err := proc.ReadPids()
		if err != nil {
			t.Fatal(err)
		}
		var children []int
		for _, p := range pids {
			if st, err := proc.ReadStat(p); err == nil && st.PPid == pid {
				children = append(children, p)
			}
		}
		if len(children) == n {
			return children
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d has children %v, want %d", pid, children, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
// with a keep-alive client connected (keepsHTTPClient).
func TestRestorePythonHTTP(t *testing.T) {
	testutil.RequireRoot(t)
	// Not the python3 of PATH, which may be a pyenv shim.
	python := program(t, "/usr/bin/python3", "python3")
	keepsHTTPClient(t, python, filepath.Join(testutil.ModuleRoot(t), "test", "subjects", "httpserver.py"))
}

// TestRestoreGoHTTP checkpoints a Go HTTP/1.1 server
// (test/subjects/gohttp, whose listener is MPTCP, as Go's are since Go
// 1.24) with a keep-alive TCP client connected (keepsHTTPClient).
func TestRestoreGoHTTP(t *testing.T) {
	testutil.RequireRoot(t)
	keepsHTTPClient(t, testutil.BuildGo(t, "./test/subjects/gohttp"))
}

// TestRestoreNodeHTTP checkpoints a Node.js HTTP/1.1 server
// (test/subjects/httpserver.js: V8 and its compiler's code, libuv's
// threads and epoll) with a keep-alive client connected
// (keepsHTTPClient).
func TestRestoreNodeHTTP(t *testing.T) {
	testutil.RequireRoot(t)
	node := program(t, "node", "nodejs")
	keepsHTTPClient(t, node, filepath.Join(testutil.ModuleRoot(t), "test", "subjects", "httpserver.js"))
}

// keepsHTTPClient starts an HTTP/1.1 server, path and args then a free
// port, that answers "request N path P", with a keep-alive client
// connected from outside the checkpoint, and checkpoints and restores it:
// the client's next request on the same connection is answered, counted
// after the one before the dump, and so is a new client's.
func keepsHTTPClient(t *testing.T, path string, args ...string) {
	t.Helper()
	unlockKeptAtCleanup(t)
	port := freePort(t)
	s := &subject{Subject: testutil.StartSubject(t, path, append(args, fmt.Sprint(port))...)}
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

// nginxConf configures nginx with everything in one directory (%[1]s):
// in the foreground, a master as root and two workers as nobody, serving
// on 127.0.0.1:%[2]d an answer that names the worker.
const nginxConf = `daemon off;
master_process on;
worker_processes 2;
user nobody nogroup;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen 127.0.0.1:%[2]d;
		location / { return 200 "worker $pid\n"; }
	}
}
`

// TestRestoreNginx checkpoints nginx, a master running as root and its
// workers as nobody sharing its listener, with a keep-alive client
// connected to a worker: after the restore every process is back with
// its user and parent, the client's next request on its connection is
// answered by the same worker, and new clients are served.
func TestRestoreNginx(t *testing.T) {
	testutil.RequireRoot(t)
	nginx := program(t, "nginx", "nginx")
	unlockKeptAtCleanup(t)
	port := freePort(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// nobody must reach the directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startProgram(t, nginx, "-c", conf, "-p", dir, "-e", filepath.Join(dir, "error.log"))
	c := dialProgram(t, s, port)
	r := bufio.NewReader(c)
	worker := httpGet(t, c, r, "/")
	workers := waitChildren(t, s.Pid, 2)
	names := map[string]int{}
	for _, pid := range workers {
		names[fmt.Sprintf("worker %d", pid)] = pid
	}
	before := readLinks(t, names)

	if pids := dumpRestoreProgram(t, s, workers...); len(pids) != 3 {
		t.Errorf("dumped pids %v, want the master and its 2 workers", pids)
	}
	if diff := cmp.Diff(before, readLinks(t, names)); diff != "" {
		t.Errorf("workers (-dumped +restored):\n%s", diff)
	}
	if got := httpGet(t, c, r, "/"); got != worker {
		t.Errorf("on the kept connection: %q, want %q", got, worker)
	}
	for i := 0; i < 4; i++ {
		c := dialProgram(t, s, port)
		got := httpGet(t, c, bufio.NewReader(c), "/")
		if _, ok := names[strings.TrimSpace(got)]; !ok {
			t.Errorf("a new connection: %q, want the answer of a worker of %v", got, workers)
		}
	}
}

// TestRestoreJava checkpoints a Java program (test/subjects/Counter.java,
// run from its source by the default JVM: its threads, its compiler's
// code, its hsperfdata file, flock-ed through a mapping) with a client
// connected: after the restore it counts on from where it was, and
// answers the client on its connection and a new one.
func TestRestoreJava(t *testing.T) {
	testutil.RequireRoot(t)
	java := program(t, "/usr/bin/java", "default-jre-headless")
	unlockKeptAtCleanup(t)
	port := freePort(t)
	s := &subject{Subject: testutil.StartSubject(t, java,
		filepath.Join(testutil.ModuleRoot(t), "test", "subjects", "Counter.java"), fmt.Sprint(port))}
	c := dialProgram(t, s, port)
	r := bufio.NewReader(c)
	ask := func(c net.Conn, r *bufio.Reader, what string) int {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintln(c, what); err != nil {
			t.Fatalf("ask %s: %v", what, err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("ask %s: %v", what, err)
		}
		n, err := strconv.Atoi(testutil.Fields(line)["n"])
		if !strings.HasPrefix(line, what+" ") || err != nil {
			t.Fatalf("ask %s: answer %q", what, line)
		}
		return n
	}
	ask(c, r, "before")
	s.WaitTicks(t, 3)
	// The JVM flock-s its hsperfdata file and keeps it through a mapping
	// only; a JVM killed leaves it behind.
	perf := fmt.Sprintf("/tmp/hsperfdata_root/%d", s.Pid)
	t.Cleanup(func() { os.Remove(perf) })
	flocked := func(when string) {
		t.Helper()
		f, err := os.Open(perf)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		defer f.Close()
		if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
			t.Errorf("%s: flock of %s: %v, want EWOULDBLOCK (the JVM's lock)", when, perf, err)
		}
	}
	flocked("before the dump")

	dumpRestoreProgram(t, s)
	flocked("after the restore")

	s.WaitTicks(t, 5)
	ticks := s.TickLines()
	for i, tk := range ticks[1:] {
		if prev, n := atoi(ticks[i].Fields["n"]), atoi(tk.Fields["n"]); n != prev+1 {
			t.Errorf("n=%d follows n=%d: a number lost or repeated across the checkpoint", n, prev)
		}
	}
	last := atoi(s.LastTick()["n"])
	if n := ask(c, r, "after"); n < last {
		t.Errorf("on the kept connection: n=%d, want at least %d", n, last)
	}
	c2 := dialProgram(t, s, port)
	if n := ask(c2, bufio.NewReader(c2), "new"); n < last {
		t.Errorf("on a new connection: n=%d, want at least %d", n, last)
	}
}

// TestRestoreTmux checkpoints a tmux server (in the foreground, -D) whose
// pane runs an interactive bash, which runs vim in the foreground, editing
// a file: the server holds the pseudo-terminal's master, bash and vim its
// slave, their session's controlling terminal, whose foreground is vim's
// group. After the restore the editing goes on, the file is written, and
// the shell, back in the foreground, answers.
func TestRestoreTmux(t *testing.T) {
	testutil.RequireRoot(t)
	tmux := program(t, "tmux", "tmux")
	vim := program(t, "vim", "vim")
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sock, file := filepath.Join(dir, "tmux.sock"), filepath.Join(dir, "edited.txt")
	s := startProgram(t, tmux, "-S", sock, "-f", "/dev/null", "-D")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	screen := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(testutil.SubjectTimeout); ; time.Sleep(20 * time.Millisecond) {
			out := run("capture-pane", "-p", "-t", "t")
			if strings.Contains(out, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the pane does not show %q:\n%s", want, out)
			}
		}
	}
	for deadline := time.Now().Add(testutil.SubjectTimeout); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) || !s.Alive() {
			t.Fatalf("tmux made no socket %s:\n%s", sock, s.Output())
		}
	}
	run("new-session", "-d", "-s", "t", "-x", "80", "-y", "20", "bash --norc --noprofile -i")
	run("send-keys", "-t", "t", "PS1='$ '; X=42; "+vim+" -u NONE -i NONE "+file, "Enter")
	screen("~")
	run("send-keys", "-t", "t", "i", "hello before", "Escape")
	screen("hello before")
	bash := waitChildren(t, s.Pid, 1)
	dumpRestoreProgram(t, s)
	// The server first, at the end: tmux may miss the SIGCHLD of a pane's
	// shell killed under it (it ignores SIGCHLD while it runs utempter
	// for the pane that closed), and the shell would stay its zombie.
	t.Cleanup(func() { unix.Kill(s.Pid, unix.SIGKILL) })
	run("send-keys", "-t", "t", "o", "and after", "Escape", ":wq", "Enter")
	for deadline := time.Now().Add(testutil.SubjectTimeout); ; time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(file)
		if err == nil && string(b) == "hello before\nand after\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vim wrote %q (%v), want %q\n%s", b, err, "hello before\nand after\n", run("capture-pane", "-p", "-t", "t"))
		}
	}
	run("send-keys", "-t", "t", "echo restored-$X-$$", "Enter")
	screen(fmt.Sprintf("restored-42-%d", bash[0]))
}

// TestRestoreStressNG checkpoints stress-ng in the middle of a run of four
// stressors (cpu; vm, whose shared memory ends in a guard page; fork,
// whose children come and go all the time; timer, a POSIX timer firing
// a thousand times a second) and restores it: the run completes,
// stress-ng says so and exits 0. (Its pipe stressor may write to a
// packet-mode pipe, whose packets a dump refuses.)
func TestRestoreStressNG(t *testing.T) {
	testutil.RequireRoot(t)
	path := program(t, "stress-ng", "stress-ng")
	s := startProgram(t, path, "--cpu", "1", "--vm", "1", "--vm-bytes", "16M", "--fork", "1", "--timer", "1", "--timer-freq", "1000",
		"--timeout", "3s", "--metrics-brief")
	waitChildren(t, s.Pid, 4)
	dumpRestoreProgram(t, s)
	if ws := s.Wait(t); !ws.Exited() || ws.ExitStatus() != 0 || !strings.Contains(s.Output(), "successful run completed") {
		t.Errorf("restored stress-ng ended with %v:\n%s", ws, s.Output())
	}
}

// TestRestoreMemcached checkpoints memcached (worker threads, libevent's
// epoll, its pipes and eventfds) after a client stored a key, with that
// client still connected: after the restore the client gets the key on
// its old connection, and so does a new client.
func TestRestoreMemcached(t *testing.T) {
	testutil.RequireRoot(t)
	memcached := program(t, "memcached", "memcached")
	unlockKeptAtCleanup(t)
	port := freePort(t)
	s := startProgram(t, memcached, "-l", "127.0.0.1", "-p", fmt.Sprint(port), "-U", "0", "-u", "nobody", "-t", "2")
	c := dialProgram(t, s, port)
	r := bufio.NewReader(c)
	ask := func(c net.Conn, r *bufio.Reader, req string, lines int) string {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatalf("send %q: %v", req, err)
		}
		var out string
		for range lines {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("answer to %q: %q, %v", req, out, err)
			}
			out += l
		}
		return out
	}
	if got := ask(c, r, "set k 0 0 5\r\nhello\r\n", 1); got != "STORED\r\n" {
		t.Fatalf("set: %q", got)
	}

	dumpRestoreProgram(t, s)

	const want = "VALUE k 0 5\r\nhello\r\nEND\r\n"
	if got := ask(c, r, "get k\r\n", 3); got != want {
		t.Errorf("get on the kept connection: %q, want %q", got, want)
	}
	c2 := dialProgram(t, s, port)
	if got := ask(c2, bufio.NewReader(c2), "get k\r\n", 3); got != want {
		t.Errorf("get on a new connection: %q, want %q", got, want)
	}
}

// makeJobs is a Makefile of four jobs, each writing six lines to a file
// of its own, a fifth of a second apart.
const makeJobs = `all: a b c d
a b c d:
	for i in 1 2 3 4 5 6; do echo $@ $$i; sleep 0.2; done > $@.out
`

// TestRestoreMake checkpoints make -j2 while it runs two of its four jobs
// (its job server's pipe, the shells it started and their sleep): after
// the restore every job finishes with its six lines, and make exits 0.
func TestRestoreMake(t *testing.T) {
	testutil.RequireRoot(t)
	mk := program(t, "make", "make")
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Makefile"), []byte(makeJobs), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startProgram(t, mk, "-C", dir, "-j2")
	waitChildren(t, s.Pid, 2)
	dumpRestoreProgram(t, s)
	if ws := s.Wait(t); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("restored make ended with %v:\n%s", ws, s.Output())
	}
	for _, job := range []string{"a", "b", "c", "d"} {
		b, err := os.ReadFile(filepath.Join(dir, job+".out"))
		if err != nil {
			t.Fatal(err)
		}
		var want string
		for i := 1; i <= 6; i++ {
			want += fmt.Sprintf("%s %d\n", job, i)
		}
		if string(b) != want {
			t.Errorf("%s.out holds %q, want %q", job, b, want)
		}
	}
}

// dnsQuery is a DNS query for the A record of name, with id.
func dnsQuery(id uint16, name string) []byte {
	q := []byte{byte(id >> 8), byte(id), 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, label := range strings.Split(name, ".") {
		q = append(append(q, byte(len(label))), label...)
	}
	return append(q, 0, 0, 1, 0, 1)
}

// TestRestoreDnsmasq checkpoints dnsmasq, answering from a hosts file on
// UDP and TCP (its TCP listener has TCP_FASTOPEN set, which cryo keeps
// in its own image), with a client's UDP socket connected to it: after
// the restore the client's next query on that socket is answered, and so
// is a query over TCP.
func TestRestoreDnsmasq(t *testing.T) {
	testutil.RequireRoot(t)
	dnsmasq := program(t, "dnsmasq", "dnsmasq-base")
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte("10.1.2.3 foo.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	s := startProgram(t, dnsmasq, "-k", "-d", "-p", fmt.Sprint(port), "--listen-address=127.0.0.1", "--bind-interfaces",
		"--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--addn-hosts="+hosts, "--user=root", "--pid-file=")
	dialProgram(t, s, port).Close()
	// Until dnsmasq accepts it, the connection that found it listening
	// waits on its listener, which a dump refuses.
	waitAccepted(t, port)
	c, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ask := func(c net.Conn, id uint16, tcp bool) {
		t.Helper()
		q := dnsQuery(id, "foo.test")
		if tcp {
			q = append([]byte{0, byte(len(q))}, q...)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(q); err != nil {
			t.Fatalf("query %d: %v", id, err)
		}
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("query %d: %v", id, err)
		}
		a := buf[:n]
		if tcp {
			a = a[min(2, n):]
		}
		// The id, an answer with no error, and its address at the end.
		if len(a) < 16 || a[0] != byte(id>>8) || a[1] != byte(id) || a[3]&0xf != 0 || a[7] != 1 || string(a[len(a)-4:]) != "\x0a\x01\x02\x03" {
			t.Fatalf("query %d: answer %x", id, a)
		}
	}
	ask(c, 1, false)

	dumpRestoreProgram(t, s)

	ask(c, 2, false)
	tc := dialProgram(t, s, port)
	ask(tc, 3, true)
}

// TestRestorePing restores ping (iputils), which sends echoes on a ping
// socket (an ICMP datagram socket) and asks for each reply's TTL, its
// errors and a timestamp (IP_RECVTTL, IP_RECVERR, SO_TIMESTAMP), IPv4 and
// IPv6: after the restore the echoes go on from the next sequence
// number, every one of them answered, with its TTL.
func TestRestorePing(t *testing.T) {
	testutil.RequireRoot(t)
	ping := program(t, "ping", "iputils-ping")
	for _, addr := range []string{"127.0.0.1", "::1"} {
		t.Run(addr, func(t *testing.T) {
			s := startProgram(t, ping, "-i", "0.2", addr)
			replies := func() []string {
				var out []string
				for _, l := range strings.Split(s.Output(), "\n") {
					if strings.Contains(l, "icmp_seq=") {
						out = append(out, l)
					}
				}
				return out
			}
			waitReplies := func(n int) {
				t.Helper()
				for deadline := time.Now().Add(testutil.SubjectTimeout); len(replies()) < n; time.Sleep(50 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("%d replies, want %d:\n%s", len(replies()), n, s.Output())
					}
				}
			}
			waitReplies(3)
			dumpRestoreProgram(t, s)
			before := len(replies())
			waitReplies(before + 3)
			for i, l := range replies() {
				if want := fmt.Sprintf("icmp_seq=%d ttl=", i+1); !strings.Contains(l, want) {
					t.Fatalf("reply %d (%d before the dump): %q, want %q in it:\n%s", i+1, before, l, want, s.Output())
				}
			}
		})
	}
}

// TestRestoreChrony restores chronyd serving NTP, whose socket asks the
// kernel for receive timestamps (SO_TIMESTAMPING, which the dump refused):
// after the restore it has the same flags and answers again.
func TestRestoreChrony(t *testing.T) {
	testutil.RequireRoot(t)
	chronyd := program(t, "chronyd", "chrony")
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "chrony.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("pidfile %s/pid\ndriftfile %s/drift\nport %d\ncmdport 0\nlocal stratum 10\nallow 127.0.0.1\n", dir, dir, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startProgram(t, chronyd, "-d", "-x", "-f", conf)
	c, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// ask sends an NTP client request until chronyd answers, as the
	// local stratum 10 server it was told to be.
	ask := func() {
		t.Helper()
		req := append([]byte{0x23}, make([]byte, 47)...) // version 4, client
		buf := make([]byte, 64)
		for deadline := time.Now().Add(testutil.SubjectTimeout); ; {
			c.SetDeadline(time.Now().Add(200 * time.Millisecond))
			c.Write(req)
			n, err := c.Read(buf)
			if err == nil && n >= 48 {
				if buf[1] != 10 {
					t.Fatalf("stratum %d, want 10", buf[1])
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no answer from chronyd: %v\n%s", err, s.Output())
			}
		}
	}
	ask()
	flags := func() int {
		t.Helper()
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.Pid))
		for _, e := range fds {
			fd, _ := strconv.Atoi(e.Name())
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", s.Pid, fd)); !strings.HasPrefix(l, "socket:") {
				continue
			}
			dup, err := kernel.Getfd(s.Pid, fd)
			if err != nil {
				t.Fatal(err)
			}
			v, err := unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_TIMESTAMPING)
			unix.Close(dup)
			if err == nil && v != 0 {
				return v
			}
		}
		t.Fatalf("chronyd (pid %d) has no socket with SO_TIMESTAMPING", s.Pid)
		return 0
	}
	before := flags()

	dumpRestoreProgram(t, s)

	if after := flags(); after != before {
		t.Errorf("SO_TIMESTAMPING flags %#x after the restore, want %#x", after, before)
	}
	ask()
}

// TestRestoreRsyslog restores rsyslogd listening on a log socket of its
// own, a unix datagram socket with SO_TIMESTAMP (which the dump refused):
// messages sent before and after the restore are logged.
func TestRestoreRsyslog(t *testing.T) {
	testutil.RequireRoot(t)
	rsyslogd := program(t, "rsyslogd", "rsyslog")
	dir := t.TempDir()
	sock, logged := filepath.Join(dir, "log.sock"), filepath.Join(dir, "messages")
	conf := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("module(load=\"imuxsock\" SysSock.Use=\"off\")\ninput(type=\"imuxsock\" Socket=\"%s\")\n*.* %s\n", sock, logged)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startProgram(t, rsyslogd, "-n", "-f", conf, "-i", filepath.Join(dir, "pid"))
	// logs sends msg and waits for rsyslogd to write it.
	logs := func(msg string) {
		t.Helper()
		for deadline := time.Now().Add(testutil.SubjectTimeout); ; time.Sleep(100 * time.Millisecond) {
			if c, err := net.Dial("unixgram", sock); err == nil {
				fmt.Fprintf(c, "<13>cryo-test: %s", msg)
				c.Close()
			}
			if b, _ := os.ReadFile(logged); strings.Contains(string(b), msg) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("rsyslogd did not log %q:\n%s", msg, s.Output())
			}
		}
	}
	logs("before the dump")

	dumpRestoreProgram(t, s)

	logs("after the restore")
}

// TestRestoreMariaDB checkpoints a MariaDB server with a table it wrote.
// InnoDB reserves terabytes of address space it may not touch: the dump
// read that mapping's page map for 21 s, and the restore could not map it
// (made writable while the pages are written, it exceeded the commit
// limit). After the restore the server serves the rows written before and
// takes more, and writes its table's pages to disk. With its default
// settings InnoDB's asynchronous I/O goes through an io_uring (liburing),
// which a thread waits on in io_uring_enter: the ring is kept; without
// native asynchronous I/O there is none.
func TestRestoreMariaDB(t *testing.T) {
	testutil.RequireRoot(t)
	server := program(t, "mariadbd", "mariadb-server")
	client := program(t, "mariadb", "mariadb-server")
	for _, tc := range []struct {
		name  string
		args  []string
		uring bool
	}{
		{name: "io_uring", uring: true},
		{name: "no-native-aio", args: []string{"--innodb-use-native-aio=0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := filepath.EvalSymlinks(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "mysqld.sock")
			if out, err := exec.Command(program(t, "mariadb-install-db", "mariadb-server"), "--user=root", "--datadir="+data,
				"--auth-root-authentication-method=socket", "--skip-test-db").CombinedOutput(); err != nil {
				t.Fatalf("mariadb-install-db: %v\n%s", err, out)
			}
			args := append([]string{"--no-defaults", "--user=root", "--datadir=" + data, "--socket=" + sock, "--skip-networking",
				"--pid-file=" + filepath.Join(dir, "pid"), "--innodb-flush-log-at-trx-commit=0"}, tc.args...)
			s := startProgram(t, server, args...)
			sql := func(q string) string {
				t.Helper()
				var out []byte
				var err error
				for deadline := time.Now().Add(testutil.SubjectTimeout); ; time.Sleep(100 * time.Millisecond) {
					out, err = exec.Command(client, "--no-defaults", "--socket="+sock, "-N", "-e", q).CombinedOutput()
					// The server may not listen yet.
					if err == nil || !strings.Contains(string(out), "Can't connect") || time.Now().After(deadline) {
						break
					}
				}
				if err != nil {
					t.Fatalf("%s: %v\n%s", q, err, out)
				}
				return strings.TrimSpace(string(out))
			}
			sql("create database d; create table d.t (i int primary key) engine=innodb; insert into d.t values (1), (2)")
			if got := ioUringFd(t, s.Pid) >= 0; got != tc.uring {
				t.Fatalf("server holds an io_uring: %v, want %v", got, tc.uring)
			}

			dumpRestoreProgram(t, s)
			ring := ioUringFd(t, s.Pid)
			var restored proc.Uring
			if tc.uring {
				restored = readUring(t, s.Pid, ring)
			}

			// FLUSH TABLES FOR EXPORT writes the table's pages.
			if got := sql("insert into d.t values (3); flush tables d.t for export; unlock tables; select sum(i) from d.t"); got != "6" {
				t.Errorf("sum of the rows after the restore: %q, want 6", got)
			}
			if got := sql("insert into d.t select i + 10 from d.t; select count(*) from d.t"); got != "6" {
				t.Errorf("rows after a second insert: %q, want 6", got)
			}
			// The pages went through the restored ring.
			if tc.uring {
				if now := readUring(t, s.Pid, ring); now.SqHead == restored.SqHead {
					t.Errorf("the restored io_uring took no request (SQ head %d)", now.SqHead)
				} else {
					t.Logf("the restored io_uring took %d requests", now.SqHead-restored.SqHead)
				}
			}
		})
	}
}

// readUring reads the fdinfo of io_uring fd of process pid.
func readUring(t *testing.T, pid, fd int) proc.Uring {
	t.Helper()
	info, err := proc.ReadFdinfo(pid, fd)
	if err != nil {
		t.Fatal(err)
	}
	u, err := info.IOUring()
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// ioUringFd returns the descriptor of an io_uring process pid holds, -1
// if none.
func ioUringFd(t *testing.T, pid int) int {
	t.Helper()
	fds, err := proc.ReadFds(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if l, err := os.Readlink(proc.Path(pid, fmt.Sprintf("fd/%d", fd))); err == nil && l == "anon_inode:[io_uring]" {
			return fd
		}
	}
	return -1
}
