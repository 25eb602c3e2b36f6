package crosskernel

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cryo-cr/cryo/internal/testutil"
)

// Tests of the harness's pieces that need no VM (and no root, but TestHoldPids).

func TestParseTick(t *testing.T) {
	tests := []struct {
		line string
		want tick
		ok   bool
	}{
		{"tick 7 mono_ns=123456 pid=42 ok", tick{7, 123456, 42}, true},
		{"tick 7 mono_ns=123456 pid=42", tick{}, false},
		{"tick x mono_ns=1 pid=2 ok", tick{}, false},
		{"tick 1 mono=1 pid=2 ok", tick{}, false},
		{"FAIL vdso clock_gettime: 1 vs 2", tick{}, false},
		{"", tick{}, false},
	}
	for _, tt := range tests {
		got, ok := parseTick(tt.line)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseTick(%q) = %v, %v; want %v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCheckContinuation(t *testing.T) {
	a := &Artifact{Out: "/x.out", Pid: 42, LastTick: 9, LastMono: 1000}
	snap := []byte("tick 8 mono_ns=900 pid=42 ok\ntick 9 mono_ns=1000 pid=42 ok\n")
	tests := []struct {
		name, after string
		n           int
		gap         int64
		err         string
	}{
		{"good", "tick 10 mono_ns=1500 pid=42 ok\ntick 11 mono_ns=1600 pid=42 ok\n", 2, 500, ""},
		{"partial last line ignored", "tick 10 mono_ns=1500 pid=42 ok\ntick 11 mo", 1, 500, ""},
		{"nothing yet", "", 0, 0, ""},
		{"FAIL line", "tick 10 mono_ns=1500 pid=42 ok\nFAIL vdso time: 3 vs 4\n", 1, 0, "FAIL vdso time"},
		{"crash", "SIGILL: illegal instruction\n", 0, 0, "SIGILL"},
		{"clock back across the restore", "tick 10 mono_ns=999 pid=42 ok\n", 0, 0, "went back"},
		{"clock back later", "tick 10 mono_ns=1500 pid=42 ok\ntick 11 mono_ns=1400 pid=42 ok\n", 1, 0, "went back"},
		{"tick lost", "tick 11 mono_ns=1500 pid=42 ok\n", 0, 0, "follows tick 9"},
		{"other pid", "tick 10 mono_ns=1500 pid=43 ok\n", 0, 0, "pid 43"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, gap, err := checkContinuation(a, snap, append(slices.Clone(snap), tt.after...))
			if tt.err == "" {
				if err != nil || n != tt.n || gap != tt.gap {
					t.Errorf("got %d ticks, gap %d, %v; want %d, %d, nil", n, gap, err, tt.n, tt.gap)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) || n != tt.n {
				t.Errorf("got %d ticks, %v; want %d and an error with %q", n, err, tt.n, tt.err)
			}
		})
	}
	if _, _, err := checkContinuation(a, snap, []byte("tick 1 mono_ns=1 pid=42 ok\n")); err == nil {
		t.Error("output that lost its content at the dump: no error")
	}
}

var testSubjects = []Subject{{Name: "c", Short: "C"}, {Name: "go", Short: "Go"}}

func TestNewPlan(t *testing.T) {
	kernels := []string{"5.10", "6.1", "6.12", "6.18"}
	var pairs []Pair
	for _, a := range kernels {
		for _, b := range kernels {
			pairs = append(pairs, Pair{a, b})
		}
	}
	chain := []string{"6.18", "6.1", "6.12", "6.18"}
	p, err := NewPlan("/r", "6.18", kernels, testSubjects, pairs, chain, map[string]int{"6.1/c": 20000})
	if err != nil {
		t.Fatal(err)
	}
	count := map[JobKind]int{}
	for _, j := range p.Jobs {
		count[j.Kind]++
	}
	// 4 kernels x 2 subjects dumps; 16 pairs x 2 restores; 3 hops x 2.
	if count[KindDump] != 8 || count[KindRestore] != 32+6 {
		t.Errorf("jobs %v, want 8 dumps and 38 restores", count)
	}
	byID := map[string]Job{}
	for _, j := range p.Jobs {
		byID[j.ID] = j
	}
	d := byID["dump/6.1/c"]
	if d.Pid != 20000 || d.Out != "/r/run/c-6.1.out" || d.Binary != "/r/bin/c" || d.Into != "c-6.1" {
		t.Errorf("dump job %+v", d)
	}
	hop1, hop2, hop3 := byID["chain/1/6.1/go"], byID["chain/2/6.12/go"], byID["chain/3/6.18/go"]
	if hop1.From != "go-6.18" || hop2.From != hop1.Into || hop3.From != hop2.Into || hop3.Into != "" || hop1.Into == "" {
		t.Errorf("chain %+v -> %+v -> %+v", hop1, hop2, hop3)
	}
	// Only host dumps restored in guests may go on without CPU features.
	for _, j := range p.Jobs {
		if want := j.Kind == KindRestore && j.Kernel != "6.18" && (strings.HasSuffix(j.From, "-6.18") || j.ID == "chain/1/6.1/"+j.Subject); j.CPUOverride != want {
			t.Errorf("%s from %s: CPUOverride %v, want %v", j.ID, j.From, j.CPUOverride, want)
		}
	}
	if _, err := NewPlan("/r", "6.18", kernels, testSubjects, []Pair{{"4.19", "6.1"}}, nil, nil); err == nil {
		t.Error("unknown kernel: no error")
	}
}

// TestRound checks the schedule of the full plan: each guest boots twice
// (its dumps and what needs only the host's, then the other guests'
// dumps), and a chain hop waits for the hop before it.
func TestRound(t *testing.T) {
	kernels := []string{"5.10", "6.1", "6.12", "6.18"}
	var pairs []Pair
	for _, a := range kernels {
		for _, b := range kernels {
			pairs = append(pairs, Pair{a, b})
		}
	}
	p, err := NewPlan("/r", "6.18", kernels, testSubjects, pairs, []string{"6.18", "6.1", "6.12", "6.18"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	made := map[string]bool{}
	pending := p.Jobs
	var boots []string
	for r := 0; len(pending) > 0 && r < 10; r++ {
		groups := round(pending, made)
		if r == 0 {
			// The host goes first, alone (Run does the same).
			groups = map[string][]Job{"6.18": groups["6.18"]}
		}
		done := map[string]Result{}
		for k, jobs := range groups {
			if k != "6.18" {
				boots = append(boots, k)
			}
			for _, j := range jobs {
				done[j.ID] = Result{OK: true}
				if j.Into != "" {
					made[j.Into] = true
				}
			}
		}
		pending = removeDone(pending, done)
	}
	if len(pending) > 0 {
		t.Fatalf("never scheduled: %v", pending)
	}
	slices.Sort(boots)
	if want := []string{"5.10", "5.10", "6.1", "6.1", "6.12", "6.12"}; !slices.Equal(boots, want) {
		t.Errorf("boots %v, want %v", boots, want)
	}
}

func TestRoundSameBoot(t *testing.T) {
	jobs := []Job{
		{ID: "d", Kernel: "6.1", Into: "a"},
		{ID: "r1", Kernel: "6.1", From: "a"},
		{ID: "r2", Kernel: "5.10", From: "a"},
		{ID: "r3", Kernel: "6.1", From: "b"},
	}
	g := round(jobs, map[string]bool{})
	var ids []string
	for _, j := range g["6.1"] {
		ids = append(ids, j.ID)
	}
	if !slices.Equal(ids, []string{"d", "r1"}) || len(g["5.10"]) != 0 {
		t.Errorf("groups %v", g)
	}
}

func TestOutputsRoundTrip(t *testing.T) {
	guest, host := t.TempDir(), t.TempDir()
	img := artifactImages(guest, "c-6.1")
	if err := os.MkdirAll(img, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"images/core-1.img": "core", "out": "tick 1 mono_ns=1 pid=1 ok\n", "meta.json": `{"name":"c-6.1"}`}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(ArtifactDir(guest, "c-6.1"), name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	results := []Result{{ID: "dump/6.1/c", OK: true, Dump: time.Second}}
	var b bytes.Buffer
	if err := WriteOutputs(&b, guest, results, []string{"c-6.1"}); err != nil {
		t.Fatal(err)
	}
	// The disk is larger than the tar: zeros follow it.
	disk := append(b.Bytes(), make([]byte, 1<<16)...)
	got, err := ReadOutputs(bytes.NewReader(disk), host)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "dump/6.1/c" || got[0].Dump != time.Second {
		t.Errorf("results %+v", got)
	}
	for name, data := range files {
		b, err := os.ReadFile(filepath.Join(ArtifactDir(host, "c-6.1"), name))
		if err != nil || string(b) != data {
			t.Errorf("%s: %q, %v", name, b, err)
		}
	}
	// A tar cut before its end marker is an error, not fewer artifacts.
	if _, err := ReadOutputs(bytes.NewReader(b.Bytes()[:b.Len()/2]), t.TempDir()); err == nil {
		t.Error("truncated tar: no error")
	}
	if _, err := ReadOutputs(bytes.NewReader(make([]byte, 4096)), t.TempDir()); err == nil {
		t.Error("empty disk: no error")
	}
}

func TestMarkdown(t *testing.T) {
	p, err := NewPlan("/r", "6.18", []string{"6.1", "6.18"}, testSubjects,
		[]Pair{{"6.18", "6.1"}, {"6.1", "6.18"}}, []string{"6.18", "6.1", "6.18"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep := &Report{Plan: p, Releases: map[string]string{"6.1": "6.1.0-57-cloud-amd64", "6.18": "6.18.4"},
		Results: map[string]Result{
			"restore/6.18/6.1/c":  {ID: "restore/6.18/6.1/c", Kernel: "6.1", OK: true, VDSO: "proxy", CPURefusal: "cpu: CPU lacks features the process uses: avx512-opmask"},
			"restore/6.18/6.1/go": {OK: true, VDSO: "proxy"},
			"restore/6.1/6.18/c":  {Err: "restore/6.1/6.18/c on 6.18: boom", VDSO: "proxy", Detail: "log line"},
			"restore/6.1/6.18/go": {Skipped: true, BlockedBy: "dump/6.1/go", Err: "not run: dump/6.1/go failed"},
			"chain/1/6.1/c":       {OK: true, VDSO: "proxy"},
			"chain/2/6.18/c":      {OK: true, VDSO: "remap"},
		}}
	md := rep.Markdown()
	for _, want := range []string{
		"| 6.18 (host)             | C pass proxy*, Go pass proxy | -",
		"| 6.1                     | -                            | C FAIL proxy, Go FAIL (dump) |",
		"- c: 6.18 (host) (dump) -> 6.1 (restore, dump: pass proxy) -> 6.18 (host) (restore: pass remap)",
		"- go: 6.18 (host) (dump) -> 6.1 (restore, dump: ?) -> 6.18 (host) (restore: ?)",
		"- restore/6.1/6.18/c on 6.18: boom\n\n```\nlog line\n```",
		"restore/6.18/6.1/c:\n\n    cpu: CPU lacks",
		"6.1 = 6.1.0-57-cloud-amd64",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if n := len(rep.Failed()); n != 2 {
		t.Errorf("%d failed, want 2", n)
	}
}

func TestSelectRun(t *testing.T) {
	k := []string{"5.10", "6.1", "6.12", "6.18"}
	pairs, chain, full, err := selectRun("subset", k, "6.18")
	if err != nil || full || len(chain) != 0 || !slices.Equal(pairs, []Pair{{"6.18", "6.1"}, {"6.1", "6.18"}, {"5.10", "6.18"}}) {
		t.Errorf("subset: %v %v %v %v", pairs, chain, full, err)
	}
	for _, v := range []string{"", "full"} {
		pairs, chain, full, err = selectRun(v, k, "6.18")
		if err != nil || !full || len(pairs) != 16 || !slices.Equal(chain, []string{"6.18", "6.1", "6.12", "6.18"}) {
			t.Errorf("%q: %d pairs, %v %v %v", v, len(pairs), chain, full, err)
		}
	}
	pairs, chain, _, err = selectRun("5.10:6.12, chain", k, "6.18")
	if err != nil || !slices.Equal(pairs, []Pair{{"5.10", "6.12"}}) || len(chain) != 4 {
		t.Errorf("list: %v %v %v", pairs, chain, err)
	}
	if _, _, _, err := selectRun("everything", k, "6.18"); err == nil {
		t.Error("bad value: no error")
	}
}

func TestFreePidBlocks(t *testing.T) {
	blocks, err := FreePidBlocks(3, 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		for pid := b; pid < b+64; pid++ {
			if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
				t.Errorf("block %d: pid %d in use", b, pid)
			}
		}
	}
}

func TestHoldPids(t *testing.T) {
	testutil.RequireRoot(t)
	blocks, err := FreePidBlocks(1, 8)
	if err != nil {
		t.Fatal(err)
	}
	h, err := HoldPids(PidBlock(blocks[0], 8))
	if err != nil {
		t.Fatal(err)
	}
	exists := func(pid int) bool {
		_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
		return err == nil
	}
	for pid := blocks[0]; pid < blocks[0]+8; pid++ {
		if !h.Holds(pid) || !exists(pid) {
			t.Errorf("pid %d: held %v, exists %v", pid, h.Holds(pid), exists(pid))
		}
	}
	if _, err := HoldPids(PidBlock(blocks[0]+4, 8)); err == nil {
		t.Error("held a block overlapping a held one")
	}
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(); err != nil {
		t.Errorf("second release: %v", err)
	}
	for pid := blocks[0]; pid < blocks[0]+8; pid++ {
		if exists(pid) {
			t.Errorf("pid %d still in use after the release", pid)
		}
	}
}
