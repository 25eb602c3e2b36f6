package crosskernel

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

var pidWord = regexp.MustCompile(`pid [0-9]+`)

// kernelTitle labels a kernel in the tables.
func (rep *Report) kernelTitle(k string) string {
	if k == rep.Plan.Host {
		return k + " (host)"
	}
	return k
}

// cell is the status of one job as a short word or two.
func (rep *Report) cell(id string) string {
	r, ok := rep.Results[id]
	switch {
	case !ok:
		return "?"
	case r.Skipped && strings.HasPrefix(r.BlockedBy, string(KindDump)+"/"):
		// The restore could not be tried: the dump it needs failed.
		return "FAIL (dump)"
	case r.Skipped:
		return "skip"
	}
	s := "FAIL"
	if r.OK {
		s = "pass"
	}
	if r.VDSO != "" {
		s += " " + r.VDSO
	}
	if r.CPURefusal != "" {
		s += "*"
	}
	return s
}

// Markdown renders the matrix, the chain, the failures and the timings.
// The tables are padded so that they read well as plain text too.
func (rep *Report) Markdown() string {
	var b strings.Builder
	p := rep.Plan
	b.WriteString("# Cross-kernel restore matrix\n\n")
	if p.Name != "" {
		fmt.Fprintf(&b, "Run: %s.\n\n", p.Name)
	}
	fmt.Fprintf(&b, "Rows: kernel the subjects were dumped on; columns: kernel they were restored on. ")
	var subj []string
	for _, s := range p.Subjects {
		subj = append(subj, s.Short+" = "+s.Name)
	}
	fmt.Fprintf(&b, "Each cell: %s.\n\n", strings.Join(subj, ", "))

	inPlan := map[Pair]bool{}
	for _, pr := range p.Pairs {
		inPlan[pr] = true
	}
	rows := [][]string{{"dumped on \\ restored on"}}
	for _, k := range p.Kernels {
		rows[0] = append(rows[0], rep.kernelTitle(k))
	}
	for _, from := range p.Kernels {
		row := []string{rep.kernelTitle(from)}
		for _, to := range p.Kernels {
			pr := Pair{from, to}
			if !inPlan[pr] {
				row = append(row, "-")
				continue
			}
			var parts []string
			for _, s := range p.Subjects {
				parts = append(parts, s.Short+" "+rep.cell(restoreID(pr, s.Name)))
			}
			row = append(row, strings.Join(parts, ", "))
		}
		rows = append(rows, row)
	}
	writeTable(&b, rows)
	b.WriteString("\nLegend: pass = restored and checked (ticks go on numbered from the dump, every vDSO call\n" +
		"matches its system call, memory pattern intact, monotonic clock never back); remap = the\n" +
		"runtime vDSO moved onto the dumped addresses; proxy = the dumped vDSO kept and patched to jump\n" +
		"into the runtime one; FAIL (dump) = the dump on that row's kernel failed, so no restore was\n" +
		"tried; skip = not run because an earlier hop failed; - = not in this run;\n" +
		"* = restored with --allow-missing-cpu-features after cryo's CPU check refused (see below).\n")
	if rep.CPUNote != "" {
		b.WriteString(rep.CPUNote + "\n")
	}
	b.WriteString("\nKernels: ")
	var rel []string
	for _, k := range p.Kernels {
		if r := rep.Releases[k]; r != "" {
			rel = append(rel, k+" = "+r)
		}
	}
	b.WriteString(strings.Join(rel, ", ") + ".\n")

	if len(p.Chain) > 1 {
		b.WriteString("\n## Chain\n\n")
		for _, s := range p.Subjects {
			hops := []string{rep.kernelTitle(p.Chain[0]) + " (dump)"}
			for hop := 1; hop < len(p.Chain); hop++ {
				what := "restore"
				if hop < len(p.Chain)-1 {
					what = "restore, dump"
				}
				hops = append(hops, fmt.Sprintf("%s (%s: %s)", rep.kernelTitle(p.Chain[hop]), what, rep.cell(chainID(hop, p.Chain[hop], s.Name))))
			}
			fmt.Fprintf(&b, "- %s: %s\n", s.Name, strings.Join(hops, " -> "))
		}
	}

	var bad, cpu []Result
	for _, id := range sortedKeys(rep.Results) {
		r := rep.Results[id]
		if !r.OK {
			bad = append(bad, r)
		}
		if r.CPURefusal != "" {
			cpu = append(cpu, r)
		}
	}
	if len(bad) > 0 {
		b.WriteString("\n## Failures\n")
		for _, r := range bad {
			fmt.Fprintf(&b, "\n- %s\n", r.Err)
			if r.Detail != "" {
				b.WriteString("\n```\n" + strings.TrimRight(r.Detail, "\n") + "\n```\n")
			}
		}
	}
	if len(cpu) > 0 {
		b.WriteString("\n## Restored with --allow-missing-cpu-features\n")
		// The refusals repeat but for the PID: one entry per message.
		var msgs []string
		jobs := map[string][]string{}
		for _, r := range cpu {
			m := pidWord.ReplaceAllString(r.CPURefusal, "pid N")
			if jobs[m] == nil {
				msgs = append(msgs, m)
			}
			jobs[m] = append(jobs[m], r.ID)
		}
		for _, m := range msgs {
			fmt.Fprintf(&b, "\n%s:\n\n    %s\n", strings.Join(jobs[m], ", "), m)
		}
	}

	b.WriteString("\n## Timing\n\n")
	fmt.Fprintf(&b, "Wall time %v", rep.Wall.Round(time.Second))
	if len(rep.Boots) > 0 {
		var total time.Duration
		for _, bt := range rep.Boots {
			total += bt.Elapsed
		}
		fmt.Fprintf(&b, "; %d guest boots, %v of guest time:", len(rep.Boots), total.Round(time.Second))
		boots := append([]Boot(nil), rep.Boots...)
		sort.Slice(boots, func(i, j int) bool {
			if boots[i].Round != boots[j].Round {
				return boots[i].Round < boots[j].Round
			}
			return boots[i].Kernel < boots[j].Kernel
		})
		for _, bt := range boots {
			fmt.Fprintf(&b, "\n- round %d, %s: %d jobs, %v", bt.Round, rep.kernelTitle(bt.Kernel), bt.Jobs, bt.Elapsed.Round(100*time.Millisecond))
			if bt.Err != "" {
				fmt.Fprintf(&b, " (failed: %s)", firstLine(bt.Err))
			}
		}
	}
	b.WriteString("\n")
	var dumps, restores, gaps []time.Duration
	for _, r := range rep.Results {
		if r.Dump > 0 {
			dumps = append(dumps, r.Dump)
		}
		if r.Restore > 0 {
			restores = append(restores, r.Restore)
		}
		if r.OK && r.Ticks > 0 {
			gaps = append(gaps, time.Duration(r.MonoGapNS))
		}
	}
	if len(dumps)+len(restores) > 0 {
		fmt.Fprintf(&b, "\ncryo dump: %s; cryo restore: %s (TCG guests are several times slower than the host).\n",
			spread(dumps), spread(restores))
	}
	if len(gaps) > 0 {
		// Across a restore the monotonic clock moves on by about the time
		// the process was frozen, whatever the uptime of the two kernels:
		// the time namespace at work.
		fmt.Fprintf(&b, "Monotonic clock from the last tick before a dump to the first after its restore: %s.\n", spread(gaps))
	}
	return b.String()
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// spread is "min-max (n)" of durations.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	lo, hi := ds[0], ds[0]
	for _, d := range ds {
		lo, hi = min(lo, d), max(hi, d)
	}
	return fmt.Sprintf("%v-%v over %d runs", lo.Round(time.Millisecond), hi.Round(time.Millisecond), len(ds))
}

// writeTable writes rows as a Markdown table with padded columns; the first
// row is the header.
func writeTable(b *strings.Builder, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	line := func(r []string) {
		b.WriteString("|")
		for i, c := range r {
			fmt.Fprintf(b, " %-*s |", width[i], c)
		}
		b.WriteString("\n")
	}
	line(rows[0])
	b.WriteString("|")
	for _, w := range width {
		b.WriteString(strings.Repeat("-", w+2) + "|")
	}
	b.WriteString("\n")
	for _, r := range rows[1:] {
		line(r)
	}
}

// Failed lists the results that did not pass, skipped ones included.
func (rep *Report) Failed() []Result {
	var out []Result
	for _, id := range sortedKeys(rep.Results) {
		if r := rep.Results[id]; !r.OK {
			out = append(out, r)
		}
	}
	return out
}
