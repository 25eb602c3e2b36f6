package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/restore"
)

func init() {
	commands["restore"] = command{
		summary: "bring a checkpoint back to life",
		run:     runRestore,
	}
}

const restoreHelp = `Restores the process checkpointed in DIR with its PID, threads, memory,
files and signal state, on this kernel even when its vDSO differs from the
one the process was dumped with. Without -d, cryo waits for the process
and exits with its exit status.`

func runRestore(args []string, stdout io.Writer) error {
	fs := newFlagSet("restore", "-D DIR [-d] [--pidfile FILE] [--shell-job] [--vdso=auto|remap|proxy] [--no-timens] [--allow-changed PATH]... [-v N] [-o LOGFILE] [criu options: --file-locks --link-remap --tcp-established --tcp-close --ext-unix-sk --skip-in-flight]", restoreHelp)
	dir := fs.String("D", "", "the image `DIR`ectory")
	fs.StringVar(dir, "images-dir", "", "same as -D")
	detach := fs.Bool("d", false, "return once the process runs instead of waiting for it")
	fs.BoolVar(detach, "restore-detached", false, "same as -d")
	pidFile := fs.String("pidfile", "", "write the restored PID to `FILE`")
	shellJob := fs.Bool("shell-job", false, "give the process this terminal where it had one")
	mode := fs.String("vdso", "auto", "`mode`: auto (remap if the vDSOs match, else proxy), remap (or fail), proxy (always)")
	noTimens := fs.Bool("no-timens", false, "do not continue the dumped monotonic and boot-time clocks in a time namespace")
	var allowChanged []string
	fs.Func("allow-changed", "restore even if `PATH` changed since the dump (repeatable); never a file the process may not open and did not hold", func(p string) error {
		allowChanged = append(allowChanged, p)
		return nil
	})
	dropCPU := fs.Bool("allow-missing-cpu-features", false, "restore even if this CPU lacks instruction sets the dump's CPU offered or register state the process uses")
	verbosity := fs.Int("v", 1, "log `level`: 0-1 errors, 2 steps, 3+ details")
	logFile := fs.String("o", "", "write the log to `FILE`")
	criu := addCriuFlags(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch m := restore.VDSOMode(*mode); {
	case len(pos) > 0:
		return usageErrorf(fs, "unexpected argument %q", pos[0])
	case *dir == "":
		return usageErrorf(fs, "give the image directory with -D DIR")
	case m != restore.VDSOAuto && m != restore.VDSORemap && m != restore.VDSOProxy:
		return usageErrorf(fs, "--vdso must be auto, remap or proxy, not %q", *mode)
	case criu.manageCgroups != "" && criu.manageCgroups != "ignore" && criu.manageCgroups != "strict":
		return usageErrorf(fs, "--manage-cgroups must be ignore or strict (the default): a restore changes no cgroup's properties and makes no cgroup, not %q", criu.manageCgroups)
	}
	if err := requirePrivilege(unix.CAP_SYS_PTRACE, unix.CAP_SYS_ADMIN, unix.CAP_SETUID, unix.CAP_SETGID); err != nil {
		return err
	}
	log, closeLog, err := newLogger(*verbosity, *logFile, os.Stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	// Opened before anything is built: a pid file that cannot be
	// written fails the restore while there is nothing to undo.
	var pf *os.File
	if *pidFile != "" {
		if pf, err = openOutput(*pidFile, os.O_TRUNC, 0o644); err != nil {
			return logged(log, *logFile, fmt.Errorf("open pid file: %w", err))
		}
		defer pf.Close()
	}
	// A restore that fails kills the tree it built: as a child
	// subreaper, cryo is handed the processes whose parents died first,
	// and reaps them. Once the tree runs, its orphans go where they
	// would have gone.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return logged(log, *logFile, fmt.Errorf("become a child subreaper: %w", err))
	}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	st, err := restore.Restore(ctx, restore.Options{
		Dir: *dir, VDSO: restore.VDSOMode(*mode), NoTimens: *noTimens, ShellJob: *shellJob,
		DropMissingCPU: *dropCPU, AllowChanged: allowChanged, TCPClose: criu.tcpClose, IgnoreCgroups: criu.manageCgroups == "ignore", Log: log, Progress: progressBar(os.Stderr, "restoring memory"),
	})
	stop()
	if err != nil {
		return logged(log, *logFile, err)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0); err != nil {
		log.Warn("stop being a child subreaper", "err", err)
	}
	log.Info("restore done", "peak-rss-kib", peakRSS(), "pid", st.Pid, "processes", st.Processes, "vdso", st.VDSO, "took", st.Total)
	if pf != nil {
		if _, err := pf.WriteString(strconv.Itoa(st.Pid) + "\n"); err != nil {
			// Whoever reads the pid file would not find the tree: it
			// must not run on unseen.
			for _, pid := range st.Pids {
				unix.Kill(pid, unix.SIGKILL)
			}
			var ws unix.WaitStatus
			unix.Wait4(st.Pid, &ws, 0, nil)
			return logged(log, *logFile, fmt.Errorf("write pid file (pid %d killed): %w", st.Pid, err))
		}
	}
	if *detach {
		fmt.Fprintf(stdout, "restored pid %d (vDSO %s) in %v\n", st.Pid, st.VDSO, st.Total.Round(1e5))
		return nil
	}
	// cryo is the restored process's parent: wait for it as a shell would,
	// passing on the signals a shell's job would get.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	go func() {
		for s := range sigs {
			unix.Kill(st.Pid, s.(unix.Signal))
		}
	}()
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(st.Pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for pid %d: %w", st.Pid, err)
		}
		break
	}
	switch {
	case ws.Exited():
		return exitError{ws.ExitStatus()}
	case ws.Signaled():
		return exitError{128 + int(ws.Signal())}
	}
	return nil
}
