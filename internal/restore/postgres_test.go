package restore_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// pgConn is a PostgreSQL client connection speaking the protocol's
// simple queries, enough for a test.
type pgConn struct {
	c net.Conn
	r *bufio.Reader
}

// pgConnect opens a connection to the server at 127.0.0.1:port as user
// postgres, whom the cluster trusts.
func pgConnect(t *testing.T, s *subject, port int) *pgConn {
	t.Helper()
	for deadline := time.Now().Add(testutil.SubjectTimeout); ; time.Sleep(50 * time.Millisecond) {
		p := &pgConn{c: dialProgram(t, s, port)}
		p.r = bufio.NewReader(p.c)
		body := binary.BigEndian.AppendUint32(nil, 3<<16) // protocol 3.0
		body = append(body, "user\x00postgres\x00database\x00postgres\x00\x00"...)
		p.send(t, 0, body)
		_, err := p.await(t, "startup")
		if err == "" {
			return p
		}
		// A server just started, or restarted, may say it is starting up.
		if !strings.Contains(err, "C57P03") || time.Now().After(deadline) {
			t.Fatalf("startup: server error %q", err)
		}
		p.c.Close()
	}
}

func (p *pgConn) send(t *testing.T, typ byte, body []byte) {
	t.Helper()
	var msg []byte
	if typ != 0 {
		msg = append(msg, typ)
	}
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(body)+4))
	p.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.c.Write(append(msg, body...)); err != nil {
		t.Fatalf("send to the server: %v", err)
	}
}

// await reads messages until the server is ready for a query, and
// returns the first column of the rows it sent, and the error it sent
// (its fields), if any.
func (p *pgConn) await(t *testing.T, what string) (rows []string, serverErr string) {
	t.Helper()
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(p.r, hdr[:]); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
		if _, err := io.ReadFull(p.r, body); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		switch hdr[0] {
		case 'E':
			if serverErr = string(body); what == "startup" {
				return nil, serverErr // and the server closes
			}
		case 'R':
			if binary.BigEndian.Uint32(body) != 0 {
				t.Fatalf("%s: the server asks for authentication %d", what, binary.BigEndian.Uint32(body))
			}
		case 'D': // a row: its column count, then each column's length and bytes
			if n := int32(binary.BigEndian.Uint32(body[2:])); n >= 0 {
				rows = append(rows, string(body[6:6+n]))
			}
		case 'Z':
			return rows, serverErr
		}
	}
}

// query runs sql and returns the first column of its rows.
func (p *pgConn) query(t *testing.T, sql string) []string {
	t.Helper()
	p.send(t, 'Q', append([]byte(sql), 0))
	rows, err := p.await(t, sql)
	if err != "" {
		t.Fatalf("%s: server error %q", sql, err)
	}
	return rows
}

// TestRestorePostgres checkpoints a PostgreSQL server, its postmaster
// and background processes running as user postgres, sharing memory
// (its main segment, mapped shared and anonymous, and the segments of
// /dev/shm), with a client's connection to its backend: after the
// restore the client's next queries on that connection see and change
// what it wrote before, and a new client's backend, forked by the
// restored postmaster, sees it all. Its main segment is of small pages,
// then of huge pages (huge_pages=on, as production servers have it).
func TestRestorePostgres(t *testing.T) {
	testutil.RequireRoot(t)
	t.Run("small pages", func(t *testing.T) { testPostgres(t, "huge_pages=off") })
	t.Run("huge pages", func(t *testing.T) {
		// 16 MiB of buffers: a segment of 20-25 MiB, once for the
		// server, once for its restore.
		testutil.ReserveHugePages(t, 32)
		testPostgres(t, "huge_pages=on", "shared_buffers=16MB")
	})
}

// testPostgres is TestRestorePostgres with the server settings settings.
func testPostgres(t *testing.T, settings ...string) {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(bins) == 0 {
		program(t, "postgres", "postgresql")
	}
	bin := filepath.Dir(bins[len(bins)-1])
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("user postgres: %v (Debian package postgresql makes it)", err)
	}
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// postgres must reach the directory, and own its data.
	for d := dir; d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	asPostgres := []string{"--reuid=" + pg.Uid, "--regid=" + pg.Gid, "--init-groups", "--reset-env"}
	if err := os.Chown(dir, atoi(pg.Uid), atoi(pg.Gid)); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("setpriv", append(asPostgres, filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")...).CombinedOutput()
	if err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort(t)
	args := append(asPostgres, filepath.Join(bin, "postgres"), "-D", data, "-k", dir, "-p", fmt.Sprint(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "autovacuum=off")
	for _, set := range settings {
		args = append(args, "-c", set)
	}
	s := startProgram(t, "/usr/bin/setpriv", args...)
	c := pgConnect(t, s, port)
	c.query(t, "create table t (i int); insert into t values (1), (2)")
	if got := c.query(t, "select sum(i) from t"); len(got) != 1 || got[0] != "3" {
		t.Fatalf("before the dump: sum %q, want 3", got)
	}
	// Its checkpointer, background writer, WAL writer, logical
	// replication launcher and the client's backend, at least.
	children := func() (n int) {
		pids, err := proc.ReadPids()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pids {
			if st, err := proc.ReadStat(p); err == nil && st.PPid == s.Pid {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(testutil.SubjectTimeout); children() < 5; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the postmaster has %d children, want at least 5", children())
		}
	}

	if pids := dumpRestoreProgram(t, s); len(pids) < 6 {
		t.Errorf("dumped pids %v, want the postmaster and at least 5 more", pids)
	}

	// A fast shutdown, after which the server leaves no shared memory
	// behind (killed, it would).
	t.Cleanup(func() {
		if err := unix.Kill(s.Pid, unix.SIGINT); err == nil {
			if ws := s.Wait(t); !ws.Exited() || ws.ExitStatus() != 0 {
				t.Errorf("the restored server's shutdown: %v\n%s", ws, s.Output())
			}
		}
	})
	c.query(t, "insert into t values (3)")
	if got := c.query(t, "select sum(i) from t"); len(got) != 1 || got[0] != "6" {
		t.Errorf("on the kept connection: sum %q, want 6", got)
	}
	c2 := pgConnect(t, s, port)
	if got := c2.query(t, "select count(*) || ' ' || sum(i) from t"); len(got) != 1 || got[0] != "3 6" {
		t.Errorf("on a new connection: %q, want \"3 6\"", got)
	}
	// What the processes share: the checkpointer's row in the activity
	// it keeps in shared memory.
	if got := c2.query(t, "select string_agg(backend_type, ',' order by backend_type) from pg_stat_activity"); len(got) != 1 || !strings.Contains(got[0], "checkpointer") {
		t.Errorf("the server's processes: %q, want its checkpointer among them", got)
	}
	if got := c2.query(t, "checkpoint; select 'ok'"); len(got) != 1 || got[0] != "ok" {
		t.Errorf("a checkpoint, which the checkpointer does when asked through shared memory and a signal: %q", got)
	}
}
