package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/kernel"
)

func init() {
	commands["dump"] = command{
		summary: "checkpoint a running process into a directory of images",
		run:     runDump,
	}
}

const dumpHelp = `Freezes process PID, its threads and its descendants, writes their state
into DIR as CRIU-format images, then kills them (or lets them go on with
--leave-running). A dump that fails, or that cryo is interrupted during,
leaves every process running as it was.`

func runDump(args []string, stdout io.Writer) error {
	fs := newFlagSet("dump", "-t PID -D DIR [--leave-running [--no-snapshot]] [--shell-job] [-v N] [-o LOGFILE] [criu options: --file-locks --link-remap --tcp-established --tcp-close --ext-unix-sk --skip-in-flight]", dumpHelp)
	pid := fs.Int("t", 0, "the `PID` of the process to dump")
	fs.IntVar(pid, "tree", 0, "same as -t")
	dir := fs.String("D", "", "the image `DIR`ectory")
	fs.StringVar(dir, "images-dir", "", "same as -D")
	leave := fs.Bool("leave-running", false, "let the process run on after the dump, frozen only while its state and its shared memory are read: its private memory is read from a copy-on-write child it forks")
	noSnapshot := fs.Bool("no-snapshot", false, "with --leave-running: read all the memory with the process frozen, without a copy-on-write child")
	shellJob := fs.Bool("shell-job", false, "allow descriptors of the caller's terminal")
	verbosity := fs.Int("v", 1, "log `level`: 0-1 errors, 2 steps, 3+ details")
	logFile := fs.String("o", "", "write the log to `FILE`")
	criu := addCriuFlags(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageErrorf(fs, "unexpected argument %q", pos[0])
	case *pid <= 0:
		return usageErrorf(fs, "give the process to dump with -t PID")
	case *dir == "":
		return usageErrorf(fs, "give the image directory with -D DIR")
	}
	if err := requirePrivilege(unix.CAP_SYS_PTRACE); err != nil {
		return err
	}
	if os.Getenv(workerEnv) == "" {
		return runWorker(append([]string{"dump"}, args...))
	}
	log, closeLog, err := newLogger(*verbosity, *logFile, os.Stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	ctx, stop := workerContext()
	defer stop()
	st, err := dump.Dump(ctx, dump.Options{
		Pid: *pid, Dir: *dir, LeaveRunning: *leave, NoSnapshot: *noSnapshot, ShellJob: *shellJob,
		LinkRemap: criu.linkRemap, GhostLimit: int64(criu.ghostLimit), ExtUnixSk: criu.extUnixSk, TCPSkipInFlight: criu.tcpSkipInFlight,
		Log: log, Progress: progressBar(os.Stderr, "dumping memory"),
	})
	if err != nil {
		return logged(log, *logFile, err)
	}
	log.Info("dump done", "peak-rss-kib", peakRSS(), "pid", *pid, "processes", st.Processes, "threads", st.Threads, "vmas", st.VMAs,
		"pages", st.Pages, "snapshots", st.Snapshots, "frozen", st.Frozen, "total", st.Total)
	fmt.Fprintf(stdout, "dumped pid %d: %d processes, %d threads, %s of memory, frozen %v\n", *pid, st.Processes, st.Threads, size(st.Pages*kernel.PageSize), st.Frozen.Round(1e5))
	return nil
}
