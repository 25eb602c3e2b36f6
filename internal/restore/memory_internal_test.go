package restore

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/cryo-cr/cryo/internal/vdso"
)

func TestCutPieces(t *testing.T) {
	p := func(s, e uint64) piece { return piece{r: vdso.Range{Start: s, End: e}} }
	pieces := []piece{p(0, 10), p(20, 25), p(30, 60)}
	tests := []struct {
		name       string
		n          uint64
		head, rest []piece
	}{
		{"inside the first", 4, []piece{p(0, 4)}, []piece{p(4, 10), p(20, 25), p(30, 60)}},
		{"the first exactly", 10, []piece{p(0, 10)}, []piece{p(20, 25), p(30, 60)}},
		{"across two", 12, []piece{p(0, 10), p(20, 22)}, []piece{p(22, 25), p(30, 60)}},
		{"two exactly", 15, []piece{p(0, 10), p(20, 25)}, []piece{p(30, 60)}},
		{"all exactly", 45, pieces, nil},
		{"more than all", 100, pieces, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]piece(nil), pieces...)
			head, rest := cutPieces(in, tt.n)
			opt := cmp.Options{cmp.AllowUnexported(piece{}), cmpopts.EquateEmpty()}
			if d := cmp.Diff(tt.head, head, opt); d != "" {
				t.Errorf("head (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.rest, rest, opt); d != "" {
				t.Errorf("rest (-want +got):\n%s", d)
			}
		})
	}
	// No more than populateCalls pieces to fault in at once; pieces of
	// a page, which take no call, do not count.
	for _, tc := range []struct {
		size       uint64
		head, rest int
	}{{2 * pageSize, populateCalls, 10}, {pageSize, populateCalls + 10, 0}} {
		many := make([]piece, populateCalls+10)
		for i := range many {
			many[i] = p(uint64(i)*4*pageSize, uint64(i)*4*pageSize+tc.size)
		}
		if head, rest := cutPieces(many, 1<<40); len(head) != tc.head || len(rest) != tc.rest || len(rest) > 0 && rest[0] != many[tc.head] {
			t.Errorf("%d pieces of %d bytes: cut into %d and %d, want %d and %d", len(many), tc.size, len(head), len(rest), tc.head, tc.rest)
		}
	}
	// Cut again and again, the chunks are the pieces, in order.
	var got []piece
	for rest := append([]piece(nil), pieces...); len(rest) > 0; {
		var head []piece
		head, rest = cutPieces(rest, 7)
		got = append(got, head...)
	}
	want := []piece{p(0, 7), p(7, 10), p(20, 24), p(24, 25), p(30, 36), p(36, 43), p(43, 50), p(50, 57), p(57, 60)}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(piece{})); d != "" {
		t.Errorf("chunks of 7 (-want +got):\n%s", d)
	}
}
