package restore

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
)

// A process is born in its parent's session and process group. It can
// then make a session or a group of its own (lead), or join a group of
// its session (joinGroup), but never enter another session: a process in
// a session whose leader has exited, with a parent in another one (a
// daemon that forked twice), is born of a helper with the leader's pid
// that made the session again, cloned with CLONE_PARENT so that its
// parent is still its own. The dump lists such helpers in the tree (a
// taskHelper that leads its session); the root's are planned here, from
// what lives at the restore (planRootSession).

// checkSessions refuses a tree one of whose processes is in a session it
// could not be born in: neither its parent's, nor its own, nor made by a
// helper of its parent's.
func (t *tree) checkSessions() error {
	for _, e := range t.entries[1:] {
		p := t.entry(int(e.GetPpid()))
		if e.GetSid() == e.GetPid() || e.GetSid() == p.GetSid() {
			continue
		}
		h := t.sessionHelper(e)
		if h == nil {
			return imageErr("pstree.img: pid %d is in session %d, neither its parent's (%d) nor made by a helper", e.GetPid(), e.GetSid(), p.GetSid())
		}
		if t.sharing(e) != 0 {
			return fmt.Errorf("%w: pid %d shares its parent's descriptor table or filesystem context, but is born in session %d", ErrUnsupported, e.GetPid(), e.GetSid())
		}
	}
	return nil
}

// entry returns the entry of pid in pstree.img, nil if none.
func (t *tree) entry(pid int) *pb.PstreeEntry {
	for _, e := range t.entries {
		if int(e.GetPid()) == pid {
			return e
		}
	}
	return nil
}

// sessionHelper returns the helper a process is born of, one that made
// its session and is a child of its parent, or nil.
func (t *tree) sessionHelper(e *pb.PstreeEntry) *zombie {
	if e.GetSid() == e.GetPid() {
		return nil
	}
	for _, z := range t.zombies {
		h := z.entry
		if z.helper && h.GetPid() == e.GetSid() && h.GetSid() == h.GetPid() && h.GetPid() != e.GetPid() && h.GetPpid() == e.GetPpid() {
			return z
		}
	}
	return nil
}

// planRootSession decides how the root gets back the session and process
// group it was in, when it led neither (lead makes those it led). It is
// born in cryo's, which is right when they are cryo's, or what
// --shell-job asks for. A session or group whose id no process holds any
// more, as a daemon's whose leader has exited, is made again by a helper
// with that pid, which makes the root, or the next helper, with
// CLONE_PARENT and exits. A group that lives on in cryo's session is
// joined (joinGroup). A session that lives on but is not cryo's cannot be
// entered: refused.
func (t *tree) planRootSession() error {
	root := t.entries[0]
	pid, sid, pgid := int(root.GetPid()), int(root.GetSid()), int(root.GetPgid())
	if t.opts.ShellJob || sid == pid {
		return nil
	}
	own, err := unix.Getsid(0)
	if err != nil {
		return fmt.Errorf("read cryo's session: %w", err)
	}
	made := sid != own
	if made {
		if holder, ok := idHolder(sid); ok {
			return fmt.Errorf("%w: the root was in session %d, which is not cryo's and lives on (%s): restore from within that session, or with --shell-job into cryo's", ErrUnsupported, sid, holder)
		}
		t.rootHelpers = append(t.rootHelpers, sid)
	}
	switch {
	case pgid == pid, made && pgid == sid, !made && pgid == unix.Getpgrp():
		return nil
	}
	holder, ok := idHolder(pgid)
	switch {
	case !ok:
		t.rootHelpers = append(t.rootHelpers, pgid)
	case made:
		return fmt.Errorf("%w: the root was in process group %d of session %d, which is gone, but the group lives on (%s)", ErrUnsupported, pgid, sid, holder)
	}
	return nil
}

// cloneRootHelpers makes the helpers of planRootSession, each of the one
// before it (the first of creator) with CLONE_PARENT, so that all are
// cryo's children: each makes its session or group. It returns the
// tracers of those it made, the last of which is to make the root.
func (t *tree) cloneRootHelpers(creator *ptrace.Tracer) ([]*ptrace.Tracer, error) {
	var made []*ptrace.Tracer
	for i, pid := range t.rootHelpers {
		t.awaitZombies([]uint32{uint32(pid)})
		got, err := creator.Clone3(creator.Pid(), cloneArgs(unix.CLONE_PARENT), pid)
		if err != nil {
			return made, fmt.Errorf("helper of the root's session or group: %w", t.explainTaken(pid, err))
		}
		t.built.add(got)
		if creator, err = creator.Child(got); err != nil {
			return made, err
		}
		made = append(made, creator)
		call, what := unix.SYS_SETPGID, "group"
		if i == 0 && pid == int(t.entries[0].GetSid()) {
			call, what = unix.SYS_SETSID, "session"
		}
		if _, err := creator.Syscall(pid, call, 0, 0); err != nil {
			return made, fmt.Errorf("helper %d: make the root's %s: %w", pid, what, err)
		}
		t.log.Info("a helper makes the root's "+what+", whose leader has exited", "pid", pid)
	}
	return made, nil
}

// idHolder names what holds id, a process or a process group or session
// of that id whose leader has exited, and reports whether one does.
func idHolder(id int) (string, bool) {
	if comm, err := proc.ReadComm(id); err == nil {
		return fmt.Sprintf("pid %d (%s)", id, comm), true
	}
	return groupHolder(id)
}

// lead makes the session or the process group the process led. Born of
// its parent, it starts in the parent's (the root in cryo's or its
// helpers'). A process can make a session or group of its own but join
// no other session: one that led neither stays in the session it was
// born in.
func (t *tree) lead(tr *ptrace.Tracer, e *pb.PstreeEntry) error {
	pid, sid, pgid := int(e.GetPid()), int(e.GetSid()), int(e.GetPgid())
	switch {
	case sid == pid:
		// A session leader leads its process group too.
		if _, err := tr.Syscall(pid, unix.SYS_SETSID); err != nil {
			return fmt.Errorf("setsid: %w", err)
		}
	case pgid == pid:
		if _, err := tr.Syscall(pid, unix.SYS_SETPGID, 0, 0); err != nil {
			return fmt.Errorf("setpgid: %w", err)
		}
	case pid == t.rootPid && t.opts.ShellJob:
		t.log.Info("the root stays in cryo's session and process group", "dumped session", sid, "dumped group", pgid)
	}
	return nil
}

// joinGroup moves a process that did not lead its process group into it,
// once its leader, or the helper that makes it, is there. The root's
// group is cryo's with --shell-job, and so is then that of the processes
// that were in it.
func (t *tree) joinGroup(tr *ptrace.Tracer, e *pb.PstreeEntry) error {
	pid, pgid := int(e.GetPid()), int(e.GetPgid())
	if pgid == pid || int(e.GetSid()) == pid {
		return nil
	}
	root := t.entries[0]
	rootGroup := pgid == int(root.GetPgid())
	if rootGroup && t.opts.ShellJob {
		st, err := proc.ReadStat(t.rootPid)
		if err != nil {
			return err
		}
		pgid = st.Pgrp
	}
	st, err := proc.ReadStat(pid)
	if err != nil {
		return err
	}
	if st.Pgrp == pgid {
		return nil
	}
	if t.entry(pgid) == nil && !rootGroup {
		return fmt.Errorf("%w: process group %d, whose leader is not in the checkpoint", ErrUnsupported, pgid)
	}
	if _, err := tr.Syscall(pid, unix.SYS_SETPGID, 0, uint64(pgid)); err != nil {
		return fmt.Errorf("join process group %d: %w", pgid, err)
	}
	return nil
}
