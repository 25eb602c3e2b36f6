// Package steps runs the named steps of a dump or a restore, the one place
// where a run stops when its context is done, where a step can be made to
// fail on purpose (the fault-injection hook the tests use to prove that a
// failure at any point cleans up), and where each step is timed in the log.
package steps

import (
	"context"
	"fmt"
	"time"

	"github.com/cryo-cr/cryo/internal/clog"
)

// Step is one named step.
type Step struct {
	Name string
	Run  func() error
}

// Run runs the steps in order and stops at the first error, which names
// the step. The step named failAt fails with injected instead of running.
func Run(ctx context.Context, log *clog.Logger, failAt string, injected error, steps []Step) error {
	for _, s := range steps {
		if err := Cancelled(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		if s.Name == failAt {
			return fmt.Errorf("%s: %w", s.Name, injected)
		}
		t := time.Now()
		if err := s.Run(); err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		log.Info("step done", "step", s.Name, "took", time.Since(t))
	}
	return nil
}

// Cancelled returns nil while ctx runs on, else its error with the cause
// of the cancellation, if one was given.
func Cancelled(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); err != nil && cause != err {
		return fmt.Errorf("%w: %w", err, cause)
	}
	return err
}

// Names lists the steps' names, in order.
func Names(steps []Step) []string {
	names := make([]string, len(steps))
	for i, s := range steps {
		names[i] = s.Name
	}
	return names
}
