package ptrace

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
)

// Spawn starts the program at path with args, traced from birth, and
// returns once it is stopped right after its exec, before its first
// instruction, with options (PTRACE_O_*) set. The session thread forks it
// with PTRACE_TRACEME, which makes that thread its tracer. attr gives its
// directory, environment (nil: this process's) and files (attr.Files[i]
// becomes descriptor i; a nil one is closed), as for os.StartProcess; nil
// means none of them. Unless attr.Sys asks for another, the program gets
// SIGKILL as its parent-death signal, which the exit of the session thread
// raises: with cryo, or at the end of the session's last Tracer.
//
// A spawned program is traced as PTRACE_TRACEME attaches, not seized: it
// stops at the exec with a SIGTRAP signal-delivery-stop, and a task born
// of it starts with a SIGSTOP one.
func Spawn(path string, args []string, attr *os.ProcAttr, options int) (*Tracer, error) {
	if !archOK {
		return nil, archErr
	}
	sys := spawnAttr(attr)
	t := newTracer(0, options, true)
	startSession(t)
	err := t.do(func() error {
		pid, err := syscall.ForkExec(path, args, sys)
		runtime.KeepAlive(attr)
		if err != nil {
			return err
		}
		t.pid, t.view, t.threads = pid, pid, []int{pid}
		if _, err := waitStop(pid, execStop); err != nil {
			return err
		}
		if err := setOptions(pid, options); err != nil {
			return err
		}
		return t.openMem()
	})
	if err != nil {
		t.leave(func() error {
			if t.pid == 0 {
				return nil // not started: kill(0) would kill this process group
			}
			return t.kill()
		})
		return nil, fmt.Errorf("spawn %s: %w", path, err)
	}
	return t, nil
}

// spawnAttr translates attr for syscall.ForkExec, traced from birth.
func spawnAttr(attr *os.ProcAttr) *syscall.ProcAttr {
	if attr == nil {
		attr = &os.ProcAttr{}
	}
	sys := &syscall.ProcAttr{Dir: attr.Dir, Env: attr.Env, Sys: &syscall.SysProcAttr{}}
	if sys.Env == nil {
		sys.Env = os.Environ()
	}
	if attr.Sys != nil {
		*sys.Sys = *attr.Sys
	}
	sys.Sys.Ptrace = true
	if sys.Sys.Pdeathsig == 0 {
		sys.Sys.Pdeathsig = syscall.SIGKILL
	}
	for _, f := range attr.Files {
		fd := ^uintptr(0) // closed in the child
		if f != nil {
			fd = f.Fd()
		}
		sys.Files = append(sys.Files, fd)
	}
	return sys
}
