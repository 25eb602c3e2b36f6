package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
)

// A restored process goes back into the cgroups it was in (cgroup.img,
// and its core's cg_set; dump's cgroup.go): one that was in the dumping
// cryo's own set stays in the restoring cryo's cgroups, as on another
// machine those are the ones it can have; one in another set is moved,
// in each hierarchy where its cgroup was not the dumping cryo's, into
// the cgroup of that path in this machine's hierarchy of the same
// controllers, before it runs or has children. The cgroup must exist: a
// restore makes none, since a new one would not have the old one's
// limits (Options.IgnoreCgroups restores into cryo's cgroups instead).

// cgroups are the sets of cgroup.img, by id, and the dumping cryo's.
type cgroups struct {
	sets map[uint32]*pb.CgSetEntry
	root uint32
	// mounts are this machine's, read when a process is first moved.
	mounts []proc.Mount
}

// loadCgroups reads cgroup.img, if the checkpoint has one, and checks
// that every process's set is there.
func (t *tree) loadCgroups(inv *pb.InventoryEntry) error {
	e := &pb.CgroupEntry{}
	switch err := t.dir.ReadImage(image.Cgroup, 0, e); {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	t.cgroups.sets = map[uint32]*pb.CgSetEntry{}
	for _, s := range e.Sets {
		if t.cgroups.sets[s.Id] != nil {
			return imageErr("cgroup.img: set %d twice", s.Id)
		}
		for _, m := range s.Ctls {
			if !strings.HasPrefix(m.Path, "/") || slices.Contains(strings.Split(m.Path, "/"), "..") {
				return imageErr("cgroup.img: set %d: cgroup %q", s.Id, m.Path)
			}
		}
		t.cgroups.sets[s.Id] = s
	}
	t.cgroups.root = inv.GetRootCgSet()
	if t.cgroups.sets[t.cgroups.root] == nil {
		return imageErr("cgroup.img lacks the dumping cryo's set %d", t.cgroups.root)
	}
	for _, r := range t.procs {
		if set := r.c.cores[uint32(r.pid)].GetTc().GetCgSet(); set != 0 && t.cgroups.sets[set] == nil {
			return imageErr("pid %d: cgroup set %d, which cgroup.img lacks", r.pid, set)
		}
	}
	return nil
}

// enterCgroups moves process pid, just made, into its cgroups.
func (t *tree) enterCgroups(pid int) error {
	r := t.proc(pid)
	if r == nil || t.cgroups.sets == nil {
		return nil
	}
	id := r.c.cores[uint32(pid)].GetTc().GetCgSet()
	if id == 0 || id == t.cgroups.root {
		return nil
	}
	if t.opts.IgnoreCgroups {
		t.log.Warn("cgroups not restored: the process stays in cryo's", "pid", pid, "set", id)
		return nil
	}
	root := t.cgroups.sets[t.cgroups.root]
	for _, m := range t.cgroups.sets[id].Ctls {
		if i := slices.IndexFunc(root.Ctls, func(o *pb.CgMemberEntry) bool { return o.Name == m.Name }); i >= 0 && root.Ctls[i].Path == m.Path {
			continue
		}
		dir, err := t.cgroupDir(m)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("enter cgroup %s:%s: %w", m.Name, m.Path, err)
		}
		t.log.Info("entered cgroup", "pid", pid, "controllers", m.Name, "path", m.Path)
	}
	return nil
}

// cgroupDir returns the directory of cgroup m in this machine's hierarchy
// of its controllers.
func (t *tree) cgroupDir(m *pb.CgMemberEntry) (string, error) {
	if t.cgroups.mounts == nil {
		mounts, err := proc.ReadMountinfo(0)
		if err != nil {
			return "", err
		}
		t.cgroups.mounts = mounts
	}
	i := slices.IndexFunc(t.cgroups.mounts, func(mt proc.Mount) bool { return mt.MountsCgroup(m.Name) })
	if i < 0 {
		return "", fmt.Errorf("%w: cgroup %s:%s: no hierarchy of those controllers is mounted here", ErrUnsupported, m.Name, m.Path)
	}
	mt := t.cgroups.mounts[i]
	dir := filepath.Join(mt.Point, m.Path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("%w: cgroup %s:%s: %s is not there (a restore makes no cgroup, which would lack the old one's limits: make it, or restore with --manage-cgroups=ignore into cryo's)",
			ErrUnsupported, m.Name, m.Path, dir)
	}
	return dir, nil
}
