package dump

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cryo-cr/cryo/internal/proc"
)

// TestSplitOwn: every page of all is read once, through /proc/PID/mem
// unless own has it.
func TestSplitOwn(t *testing.T) {
	const p = pageSize
	pr := func(page, n uint64) proc.PageRun { return proc.PageRun{Addr: page * p, Pages: n} }
	r := func(page, n uint64, viaMem bool) run { return run{page * p, n * p, viaMem, 0} }
	for _, tc := range []struct {
		name     string
		all, own []proc.PageRun
		want     []run
	}{
		{"none own", []proc.PageRun{pr(1, 3)}, nil, []run{r(1, 3, true)}},
		{"all own", []proc.PageRun{pr(1, 3)}, []proc.PageRun{pr(1, 3)}, []run{r(1, 3, false)}},
		{"middle", []proc.PageRun{pr(1, 5)}, []proc.PageRun{pr(2, 2)}, []run{r(1, 1, true), r(2, 2, false), r(4, 2, true)}},
		// A page own has that all has not (it changed between the reads)
		// is not read; one all has that own lacks is.
		{"across runs", []proc.PageRun{pr(1, 2), pr(5, 2)}, []proc.PageRun{pr(0, 2), pr(4, 2)},
			[]run{r(1, 1, false), r(2, 1, true), r(5, 1, false), r(6, 1, true)}},
	} {
		if diff := cmp.Diff(tc.want, splitOwn(tc.all, tc.own, false), cmp.AllowUnexported(run{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}
