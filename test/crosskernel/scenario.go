package crosskernel

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// JobKind says what a job does.
type JobKind string

const (
	// KindDump starts a subject, lets it tick and dumps it.
	KindDump JobKind = "dump"
	// KindRestore restores an artifact, watches the process tick, then
	// kills it or, when the job names an artifact to write, dumps it.
	KindRestore JobKind = "restore"
)

// Job is one unit of work on one kernel.
type Job struct {
	ID      string  `json:"id"`
	Kind    JobKind `json:"kind"`
	Kernel  string  `json:"kernel"` // label of the kernel it runs on
	Subject string  `json:"subject"`

	// Dump: the subject's binary, extra environment, output file and the
	// PID it should get (0: any; only honoured in a guest).
	Binary string   `json:"binary,omitempty"`
	Env    []string `json:"env,omitempty"`
	Out    string   `json:"out,omitempty"`
	Pid    int      `json:"pid,omitempty"`

	// Restore: the artifact to restore and extra cryo restore arguments.
	From        string   `json:"from,omitempty"`
	RestoreArgs []string `json:"restore_args,omitempty"`
	// CPUOverride lets the runner retry a restore that cryo refused for
	// lack of CPU features with --allow-missing-cpu-features: set for the
	// restores of host dumps in guests only.
	CPUOverride bool `json:"cpu_override,omitempty"`

	// Into names the artifact the job writes: the dump of a dump job, or
	// the dump of the restored process for a chain hop.
	Into string `json:"into,omitempty"`
}

// Artifact describes a dump as it travels: the image directory, and the
// subject's output file as it was when the process was dumped.
type Artifact struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	Kernel  string `json:"kernel"`  // label of the kernel it was dumped on
	Release string `json:"release"` // that kernel's uname -r
	Pid     int    `json:"pid"`
	Tids    []int  `json:"tids"`
	// Out is the output file the process writes, at the same path
	// everywhere; the snapshot of its content is ArtifactOut.
	Out string `json:"out"`
	// LastTick and LastMono are the last tick line before the dump.
	LastTick int   `json:"last_tick"`
	LastMono int64 `json:"last_mono_ns"`
	// VDSO is the restore's vDSO mode of the process that was dumped
	// ("" for a process that was never restored).
	VDSO string `json:"vdso,omitempty"`
}

// Result is what running a job gave.
type Result struct {
	ID      string `json:"id"`
	Kernel  string `json:"kernel"`
	Release string `json:"release"`
	OK      bool   `json:"ok"`
	// Skipped marks a job that was not attempted because the job that
	// should have made its artifact (BlockedBy) failed; Err says so.
	Skipped   bool   `json:"skipped,omitempty"`
	BlockedBy string `json:"blocked_by,omitempty"`
	Err       string `json:"err,omitempty"`
	// VDSO is the vDSO mode the restore chose (remap or proxy).
	VDSO string `json:"vdso,omitempty"`
	Pid  int    `json:"pid,omitempty"`
	// CPURefusal is cryo's refusal that made the runner restore with
	// --allow-missing-cpu-features; empty when it was not needed.
	CPURefusal string `json:"cpu_refusal,omitempty"`
	// Ticks counts the good tick lines the restored process printed while
	// watched; MonoGapNS is its first monotonic reading minus the last one
	// before the dump.
	Ticks     int   `json:"ticks,omitempty"`
	MonoGapNS int64 `json:"mono_gap_ns,omitempty"`
	// Dump and Restore are the wall times of the cryo commands.
	Dump    time.Duration `json:"dump,omitempty"`
	Restore time.Duration `json:"restore,omitempty"`
	// Wall is the time the whole job took.
	Wall time.Duration `json:"wall,omitempty"`
	// Detail holds the tail of the cryo log and of the subject's output
	// when the job failed.
	Detail string `json:"detail,omitempty"`
}

// Scenario is what a guest is asked to do.
type Scenario struct {
	Kernel string `json:"kernel"` // label, e.g. "6.1"
	// Root is the directory that holds binaries, output files and
	// artifacts, at the same path on the host and in every guest.
	Root string `json:"root"`
	// Modules are kernel modules to load, in order, before the jobs; paths
	// inside the initramfs.
	Modules []string `json:"modules,omitempty"`
	// CapBound is the host's capability bounding set: the guest drops
	// every other capability before the jobs, so that what it dumps has
	// no capability the host cannot give back, and its restores run with
	// the privileges they have on the host.
	CapBound uint64 `json:"cap_bound"`
	// Rlimits are the host's resource limits (by RLIMIT_* number), which
	// the guest takes before it drops capabilities: they differ by machine
	// (RLIMIT_NPROC follows the RAM) and raising one back on restore needs
	// CAP_SYS_RESOURCE, which the host's root may lack.
	Rlimits map[int]unix.Rlimit `json:"rlimits"`
	// Disk is the block device the output tar goes to.
	Disk string        `json:"disk,omitempty"`
	Jobs []Job         `json:"jobs"`
	Opts RunnerOptions `json:"opts"`
}

// Layout of the root directory.
const (
	binDir = "bin" // cryo and the subjects
	runDir = "run" // subjects' output files
	artDir = "art" // artifacts: art/NAME/{images/,out,meta.json,dump.log}
	logDir = "log" // restore logs, one per job
)

// ArtifactDir is where the artifact name lives under root.
func ArtifactDir(root, name string) string { return filepath.Join(root, artDir, name) }

// artifactImages is the image directory of an artifact.
func artifactImages(root, name string) string {
	return filepath.Join(ArtifactDir(root, name), "images")
}

// ReadArtifact loads the description of the artifact name under root.
func ReadArtifact(root, name string) (*Artifact, error) {
	b, err := os.ReadFile(filepath.Join(ArtifactDir(root, name), "meta.json"))
	if err != nil {
		return nil, fmt.Errorf("artifact %s: %w", name, err)
	}
	a := new(Artifact)
	if err := json.Unmarshal(b, a); err != nil {
		return nil, fmt.Errorf("artifact %s: %w", name, err)
	}
	return a, nil
}

// Rlimits returns this process's resource limits.
func Rlimits() (map[int]unix.Rlimit, error) {
	m := map[int]unix.Rlimit{}
	// RLIMIT_CPU (0) to RLIMIT_RTTIME (15): every limit Linux has had
	// since 2.6.25.
	for r := 0; r <= unix.RLIMIT_RTTIME; r++ {
		var l unix.Rlimit
		if err := unix.Getrlimit(r, &l); err != nil {
			return nil, fmt.Errorf("getrlimit %d: %w", r, err)
		}
		m[r] = l
	}
	return m, nil
}

// CapBound returns this process's capability bounding set.
func CapBound() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapBnd in /proc/self/status")
}

func writeArtifact(root string, a *Artifact) error {
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(ArtifactDir(root, a.Name), "meta.json"), b, 0o644)
}
