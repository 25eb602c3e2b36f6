package main

import (
	"context"
	"io"
	"os/signal"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/demo"
)

func init() {
	commands["demo"] = command{
		summary: "checkpoint a built-in process and restore it through the vDSO proxy",
		run: func(args []string, stdout io.Writer) error {
			fs := newFlagSet("demo", "", "Starts a process that prints a counter and the time, checkpoints it,\nrestores it with the vDSO proxy forced, and shows it still counting.")
			if _, err := parseArgs(fs, args); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
			defer stop()
			return demo.Run(ctx, stdout)
		},
	}
}
