package dump

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
)

// The cgroups a process is in are kept as CRIU keeps them: cgroup.img
// lists sets of cgroups, one cgroup per hierarchy; the first set is the
// dumping cryo's own (the inventory's root_cg_set), and each process's
// core names its set. Only membership is kept, not the cgroups' limits:
// a restore puts a process back into cgroups that exist (restore's
// cgroup.go) and leaves one in cryo's set in the restoring cryo's.

// rootCgSet is the id of the set of the dumping cryo's own cgroups.
const rootCgSet = 1

// cgSets are the sets of cgroups of the tree, each known by the text of
// /proc/PID/cgroup it was read from.
type cgSets struct {
	sets []*pb.CgSetEntry
	ids  map[string]uint32
}

// add returns the id of the set that text, /proc/PID/cgroup, lists.
func (c *cgSets) add(text []byte) (uint32, error) {
	if id, ok := c.ids[string(text)]; ok {
		return id, nil
	}
	cgs, err := proc.ParseCgroup(text)
	if err != nil {
		return 0, err
	}
	set := &pb.CgSetEntry{Id: uint32(len(c.sets) + rootCgSet)}
	for _, cg := range cgs {
		set.Ctls = append(set.Ctls, &pb.CgMemberEntry{Name: cg.Controllers, Path: cg.Path})
	}
	c.sets = append(c.sets, set)
	c.ids[string(text)] = set.Id
	return set.Id, nil
}

// dumpCgroups records the set of cgroups of the process in its core, tc.
// A thread in other cgroups than its process (cgroup v1, or v2's threaded
// mode) is refused.
func (d *dumper) dumpCgroups(tc *pb.TaskCoreEntry) error {
	if d.cgroups.ids == nil {
		own, err := proc.ReadCgroupFile(0, 0)
		if err != nil {
			return fmt.Errorf("cryo's own: %w", err)
		}
		d.cgroups.ids = map[string]uint32{}
		if _, err := d.cgroups.add(own); err != nil {
			return fmt.Errorf("cryo's own cgroups: %w", err)
		}
	}
	// Through a live thread: an exited leader shows the root cgroups.
	text, err := proc.ReadCgroupFile(d.pid, d.view)
	if err != nil {
		return err
	}
	for _, tid := range d.tids() {
		if tid == d.view || tid == d.pid && d.leaderExited() {
			continue
		}
		t, err := proc.ReadCgroupFile(d.pid, tid)
		if err != nil {
			return fmt.Errorf("thread %d: %w", tid, err)
		}
		if !bytes.Equal(t, text) {
			return fmt.Errorf("%w: thread %d is in other cgroups than its process (%s, not %s)",
				ErrUnsupported, tid, oneLine(t), oneLine(text))
		}
	}
	id, err := d.cgroups.add(text)
	if err != nil {
		return err
	}
	tc.CgSet = pb.Uint32(id)
	if id != rootCgSet {
		d.log.Info("cgroups", "pid", d.pid, "set", id, "cgroups", oneLine(text))
	}
	return nil
}

// oneLine shows the text of a cgroup file on one line.
func oneLine(text []byte) string {
	return strings.ReplaceAll(strings.TrimSpace(string(text)), "\n", " ")
}

// writeCgroups writes cgroup.img: the sets, and the hierarchies of
// cryo's own, by their controllers.
func (t *tree) writeCgroups() error {
	if len(t.cgroups.sets) == 0 {
		return nil
	}
	e := &pb.CgroupEntry{Sets: t.cgroups.sets}
	for _, m := range t.cgroups.sets[0].Ctls {
		e.Controllers = append(e.Controllers, &pb.CgControllerEntry{Cnames: strings.Split(m.Name, ",")})
	}
	return t.dir.WriteImage(image.Cgroup, 0, e)
}
