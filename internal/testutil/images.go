package testutil

import (
	"errors"
	"io"
	"testing"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
)

// Checkpoint is what the tests read of a one-process image directory.
type Checkpoint struct {
	Dir    *image.Dir
	Pstree *pb.PstreeEntry
	MM     *pb.MmEntry
	Cores  map[uint32]*pb.CoreEntry // by TID
	Files  map[uint32]*pb.FileEntry // by id
	// Pages are the runs of pagemap-PID.img; Pagemap reads their contents
	// until the test ends.
	Pages   []image.PageEntry
	Pagemap *image.PageReader
}

// ReadCheckpoint reads the images of process pid in dir, failing the test
// on any error.
func ReadCheckpoint(t testing.TB, dir string, pid int) *Checkpoint {
	t.Helper()
	d, err := image.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := &Checkpoint{Dir: d, Pstree: &pb.PstreeEntry{}, MM: &pb.MmEntry{},
		Cores: map[uint32]*pb.CoreEntry{}, Files: map[uint32]*pb.FileEntry{}}
	tree, err := image.ReadAll[pb.PstreeEntry](d, image.Pstree, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range tree {
		if e.GetPid() == uint32(pid) {
			c.Pstree = e
		}
	}
	if c.Pstree.GetPid() != uint32(pid) {
		t.Fatalf("pstree.img does not list pid %d", pid)
	}
	if err := d.ReadImage(image.MM, uint32(pid), c.MM); err != nil {
		t.Fatal(err)
	}
	for _, tid := range c.Pstree.Threads {
		core := &pb.CoreEntry{}
		if err := d.ReadImage(image.Core, tid, core); err != nil {
			t.Fatal(err)
		}
		c.Cores[tid] = core
	}
	files, err := image.ReadAll[pb.FileEntry](d, image.Files, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		c.Files[f.GetId()] = f
	}
	if c.Pagemap, err = d.OpenPages(uint32(pid)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Pagemap.Close() })
	for {
		e, err := c.Pagemap.Next()
		if errors.Is(err, io.EOF) {
			return c
		}
		if err != nil {
			t.Fatal(err)
		}
		c.Pages = append(c.Pages, e)
	}
}

// DumpedPids lists the processes of the checkpoint in dir, the root
// first.
func DumpedPids(t testing.TB, dir string) []int {
	t.Helper()
	d, err := image.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := image.ReadAll[pb.PstreeEntry](d, image.Pstree, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range tree {
		out = append(out, int(e.GetPid()))
	}
	return out
}

// ReadSysvIPC reads the semaphore sets and message queues of IPC
// namespace ns in dir, failing the test on any error.
func ReadSysvIPC(t testing.TB, dir *image.Dir, ns uint32) ([]image.SemSet, []image.MsgQueue) {
	t.Helper()
	r, err := dir.Open(image.IpcSem, ns)
	if err != nil {
		t.Fatal(err)
	}
	sets, err := image.ReadSemSets(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if r, err = dir.Open(image.IpcMsg, ns); err != nil {
		t.Fatal(err)
	}
	queues, err := image.ReadMsgQueues(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	return sets, queues
}
