package dump

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestByOffset checks the runs of an object mapped more than once come in
// object order, each page once.
func TestByOffset(t *testing.T) {
	const p = pageSize
	for _, tc := range []struct {
		name string
		in   []run
		want []run // as object offset and length
	}{
		{"one mapping", []run{{0x10000, 2 * p, false, 0x10000}}, []run{{0, 2 * p, false, 0}}},
		{"split, in address order", []run{{0x10000, p, false, 0x10000}, {0x12000, p, false, 0x10000}},
			[]run{{0, p, false, 0}, {2 * p, p, false, 0}}},
		{"mapped again below", []run{{0x50000, p, false, 0x40000}, {0x10000, 2 * p, false, 0x10000}},
			[]run{{0, 2 * p, false, 0}, {0x10000, p, false, 0}}},
		{"same pages twice", []run{{0x10000, 3 * p, false, 0x10000}, {0x80000, 2 * p, false, 0x7f000}},
			[]run{{0, 3 * p, false, 0}}},
		{"overlapping", []run{{0x10000, 2 * p, false, 0x10000}, {0x80000, 3 * p, false, 0x7f000}},
			[]run{{0, 2 * p, false, 0}, {2 * p, 2 * p, false, 0}}},
	} {
		var got []run
		for _, r := range byOffset(tc.in) {
			got = append(got, run{r.addr - r.base, r.n, r.viaMem, 0})
		}
		if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(run{})); d != "" {
			t.Errorf("%s: (-want +got):\n%s", tc.name, d)
		}
	}
}
