package steps

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRun(t *testing.T) {
	injected := errors.New("injected")
	boom := errors.New("boom")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		failAt  string
		failing string // the step that returns boom
		ran     []string
		want    error
		wantMsg string
	}{
		{name: "all", ctx: context.Background(), ran: []string{"a", "b", "c"}},
		{name: "injected", ctx: context.Background(), failAt: "b", ran: []string{"a"}, want: injected, wantMsg: "b: injected"},
		{name: "failing", ctx: context.Background(), failing: "c", ran: []string{"a", "b", "c"}, want: boom, wantMsg: "c: boom"},
		{name: "cancelled", ctx: cancelled, ran: nil, want: context.Canceled, wantMsg: "a: context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ran []string
			var ss []Step
			for _, n := range []string{"a", "b", "c"} {
				ss = append(ss, Step{n, func() error {
					ran = append(ran, n)
					if n == tt.failing {
						return boom
					}
					return nil
				}})
			}
			err := Run(tt.ctx, nil, tt.failAt, injected, ss)
			if !errors.Is(err, tt.want) || (err != nil && err.Error() != tt.wantMsg) {
				t.Errorf("Run = %v, want %q wrapping %v", err, tt.wantMsg, tt.want)
			}
			if d := cmp.Diff(tt.ran, ran); d != "" {
				t.Errorf("steps run (-want +got):\n%s", d)
			}
			if d := cmp.Diff([]string{"a", "b", "c"}, Names(ss)); d != "" {
				t.Errorf("Names (-want +got):\n%s", d)
			}
		})
	}
}
