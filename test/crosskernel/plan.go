package crosskernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// Subject is a program the matrix dumps and restores.
type Subject struct {
	Name  string // also the binary's name under root/bin
	Short string // for the table, e.g. "C"
	// Env is added to the subject's environment wherever it starts.
	Env []string
}

// Pair is an ordered pair of kernels: dumped on From, restored on To.
type Pair struct{ From, To string }

// Plan is the work of one run.
type Plan struct {
	// Name says which run this is, e.g. "subset" or "full".
	Name     string
	Kernels  []string // labels, in table order
	Host     string   // the host's label
	Subjects []Subject
	Pairs    []Pair
	// Chain is the list of kernels a process visits, dumped at each but
	// the last; empty for none.
	Chain []string
	Jobs  []Job
}

// Job IDs.
func dumpID(k, subject string) string { return "dump/" + k + "/" + subject }
func restoreID(p Pair, subject string) string {
	return "restore/" + p.From + "/" + p.To + "/" + subject
}
func chainID(hop int, k, subject string) string {
	return fmt.Sprintf("chain/%d/%s/%s", hop, k, subject)
}

// dumpArtifact names the artifact of the first dump of subject on k.
func dumpArtifact(k, subject string) string { return subject + "-" + k }

// NewPlan makes the jobs for pairs and a chain. pids gives, for each guest
// dump of a subject (key "KERNEL/SUBJECT"), the PID it should get: one the
// host keeps free, so that the dump can be restored on the host too.
func NewPlan(root, host string, kernels []string, subjects []Subject, pairs []Pair, chain []string, pids map[string]int) (*Plan, error) {
	p := &Plan{Kernels: kernels, Host: host, Subjects: subjects, Pairs: pairs, Chain: chain}
	// Only a host dump restored in a guest may need
	// --allow-missing-cpu-features: the guests' CPU lacks instruction
	// sets the host's offered when the subject started (see guestCPU).
	hostToGuest := func(from, to string) bool { return from == host && to != host }
	known := map[string]bool{}
	for _, k := range kernels {
		known[k] = true
	}
	dumped := map[string]bool{}
	needDump := func(k string) {
		if !dumped[k] {
			dumped[k] = true
			for _, s := range subjects {
				p.Jobs = append(p.Jobs, Job{
					ID: dumpID(k, s.Name), Kind: KindDump, Kernel: k, Subject: s.Name,
					Binary: filepath.Join(root, binDir, s.Name), Env: s.Env,
					Out:  filepath.Join(root, runDir, s.Name+"-"+k+".out"),
					Pid:  pids[k+"/"+s.Name],
					Into: dumpArtifact(k, s.Name),
				})
			}
		}
	}
	for _, pr := range pairs {
		if !known[pr.From] || !known[pr.To] {
			return nil, fmt.Errorf("pair %s -> %s: unknown kernel", pr.From, pr.To)
		}
		needDump(pr.From)
		for _, s := range subjects {
			p.Jobs = append(p.Jobs, Job{ID: restoreID(pr, s.Name), Kind: KindRestore, Kernel: pr.To,
				Subject: s.Name, From: dumpArtifact(pr.From, s.Name), CPUOverride: hostToGuest(pr.From, pr.To)})
		}
	}
	if len(chain) == 1 {
		return nil, fmt.Errorf("a chain needs two kernels at least, got %v", chain)
	}
	for _, k := range chain {
		if !known[k] {
			return nil, fmt.Errorf("chain %v: unknown kernel %s", chain, k)
		}
	}
	if len(chain) > 1 {
		needDump(chain[0])
		for _, s := range subjects {
			from := dumpArtifact(chain[0], s.Name)
			for hop := 1; hop < len(chain); hop++ {
				j := Job{ID: chainID(hop, chain[hop], s.Name), Kind: KindRestore, Kernel: chain[hop],
					Subject: s.Name, From: from, CPUOverride: hostToGuest(chain[hop-1], chain[hop])}
				if hop < len(chain)-1 {
					j.Into = fmt.Sprintf("chain%d-%s-%s", hop, s.Name, chain[hop])
					from = j.Into
				}
				p.Jobs = append(p.Jobs, j)
			}
		}
	}
	return p, nil
}

// round groups, per kernel, the pending jobs that can run now: those whose
// artifact exists, or is made by an earlier job of the same group.
func round(pending []Job, made map[string]bool) map[string][]Job {
	groups := map[string][]Job{}
	inGroup := map[string]string{} // artifact -> kernel of the group making it
	for _, j := range pending {
		if j.From != "" && !made[j.From] && inGroup[j.From] != j.Kernel {
			continue
		}
		groups[j.Kernel] = append(groups[j.Kernel], j)
		if j.Into != "" {
			inGroup[j.Into] = j.Kernel
		}
	}
	return groups
}

// FreePidBlocks finds n blocks of size consecutive PIDs that no task,
// process group or session of this machine uses, just behind the PID allocator's position: the
// allocator reaches them last, after going round all other PIDs.
func FreePidBlocks(n, size int) ([]int, error) {
	last, err := readInt("/proc/sys/kernel/ns_last_pid")
	if err != nil {
		return nil, err
	}
	pidMax, err := readInt("/proc/sys/kernel/pid_max")
	if err != nil {
		return nil, err
	}
	used := map[int]bool{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		used[pid] = true
		// A process group or session keeps its PID allocated after its
		// leader is gone, while a member lives: clone3 finds it taken.
		if st, err := proc.ReadStat(pid); err == nil {
			used[st.Pgrp], used[st.Session] = true, true
		}
		tasks, _ := os.ReadDir(filepath.Join("/proc", e.Name(), "task"))
		for _, t := range tasks {
			if tid, err := strconv.Atoi(t.Name()); err == nil {
				used[tid] = true
			}
		}
	}
	// Low PIDs belong to early system processes; the first 300 are never
	// handed out again after a wrap.
	const low = 1000
	var blocks []int
	start := last - 2*size
	for tries := 0; len(blocks) < n && tries < pidMax/size; tries++ {
		if start < low {
			start = pidMax - size - 1
		}
		free := true
		for p := start; p < start+size; p++ {
			if used[p] {
				free = false
				break
			}
		}
		if free {
			blocks = append(blocks, start)
		}
		start -= size
	}
	if len(blocks) < n {
		return nil, fmt.Errorf("no %d free blocks of %d PIDs below pid_max %d", n, size, pidMax)
	}
	return blocks, nil
}

// PidHold keeps PIDs from the rest of the machine until a restore needs
// them: each is a zombie child of this process, made with clone3's set_tid,
// until Release reaps them. A PID left free is handed out again once the
// allocator wraps, which the test suite's thousands of threads make it do
// within a run (pid_max is 32768 here).
type PidHold struct {
	want map[int]bool
	mu   sync.Mutex
	held []int
}

// PidBlock lists the size PIDs from start.
func PidBlock(start, size int) []int {
	pids := make([]int, size)
	for i := range pids {
		pids[i] = start + i
	}
	return pids
}

// HoldPids holds pids, all or none.
func HoldPids(pids []int) (*PidHold, error) {
	h := &PidHold{want: map[int]bool{}}
	for _, p := range pids {
		h.want[p] = true
		pid, err := kernel.Clone3Exit([]int32{int32(p)})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("hold pid %d: %w", p, err), h.Release())
		}
		h.held = append(h.held, pid)
	}
	return h, nil
}

// Holds reports whether pid is one of those held, or were before Release.
func (h *PidHold) Holds(pid int) bool { return h.want[pid] }

// Release frees the PIDs; again, it does nothing.
func (h *PidHold) Release() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for _, p := range h.held {
		if _, err := unix.Wait4(p, nil, 0, nil); err != nil {
			errs = append(errs, fmt.Errorf("release pid %d: %w", p, err))
		}
	}
	h.held = nil
	return errors.Join(errs...)
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
