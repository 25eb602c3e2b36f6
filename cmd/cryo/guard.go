package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"

	"golang.org/x/sys/unix"
)

// A dump alters its target while it works on it (injected system calls
// borrow its registers, its signal mask and a scratch mapping) and puts
// everything back when it ends, fails or is interrupted. Only a process
// that is still alive can put things back: so `cryo dump` does its work in
// a worker, a second cryo process, and waits for it. When the command is
// killed, even by SIGKILL, the worker sees its end of a pipe close, and
// rolls the target back as for SIGINT.

// workerEnv marks the worker; its value is the descriptor of the pipe
// whose closing says the command is gone.
const workerEnv = "CRYO_DUMP_WORKER_FD"

// workerContext returns the context a dump runs under: cancelled by SIGINT
// or SIGTERM, and in a worker when the command that started it dies.
func workerContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	if os.Getenv(workerEnv) == "" {
		return ctx, stop
	}
	ctx, cancel := context.WithCancelCause(ctx)
	lifeline := os.NewFile(3, "lifeline")
	go func() {
		var b [1]byte
		lifeline.Read(b[:]) // returns when the command's end closes
		cancel(errCommandGone)
	}()
	return ctx, func() { cancel(nil); stop() }
}

var errCommandGone = errors.New("the cryo command that started the dump is gone")

// runWorker runs this command again as a worker and returns its exit
// status. Signals that would end the command are passed on to the worker,
// which rolls the dump back and ends.
func runWorker(args []string) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start dump worker: %w", err)
	}
	// By its own path, so that it is named like the command, not "exe".
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("start dump worker: %w", err)
	}
	cmd := exec.Command(self, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{r}
	cmd.Env = append(os.Environ(), workerEnv+"=3")
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start dump worker: %w", err)
	}
	r.Close()
	defer w.Close() // held until the worker is done: its lifeline
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			cmd.Process.Signal(s)
		case err := <-done:
			var ee *exec.ExitError
			switch {
			case err == nil:
				return nil
			case errors.As(err, &ee) && ee.ExitCode() >= 0:
				return exitError{ee.ExitCode()}
			case errors.As(err, &ee):
				ws := ee.Sys().(unix.WaitStatus)
				return fmt.Errorf("dump worker pid %d: killed by %v", cmd.Process.Pid, ws.Signal())
			}
			return fmt.Errorf("dump worker: %w", err)
		}
	}
}
