package dump_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// What test/subjects/unlinked.c holds; the two must agree.
const (
	unlinkedBlock   = 4096
	attrMode        = 0o7640
	attrMtime       = 123456
	attrData        = "the contents of an unlinked file with esoteric permissions\n"
	sharedSize      = 3 * unlinkedBlock
	holesBlocks     = 5
	unlinkedDirMode = 0o751
)

// unlinkedPattern is the subject's fill of n bytes with seed.
func unlinkedPattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*131) + seed
	}
	return b
}

// startUnlinked starts test/subjects/unlinked.c with parts, in a directory
// of its own.
func startUnlinked(t *testing.T, parts ...string) (*testutil.Subject, string) {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return testutil.StartSubject(t, testutil.BuildC(t, "unlinked.c"), append([]string{dir}, parts...)...), dir
}

// remapOf returns the remap of file id, failing the test if it has none.
func (im *images) remapOf(t *testing.T, id uint32) *pb.RemapFilePathEntry {
	t.Helper()
	for _, r := range im.remaps {
		if r.GetOrigId() == id {
			return r
		}
	}
	t.Fatalf("file %d has no remap: %v", id, im.remaps)
	return nil
}

// ghostOf returns the ghost file that file id is remapped to: its entry,
// and its chunks (one at offset 0 for a ghost without chunks).
func (im *images) ghostOf(t *testing.T, id uint32) (uint32, *pb.GhostFileEntry, []ghostChunk) {
	t.Helper()
	r := im.remapOf(t, id)
	if r.GetRemapType() != pb.RemapType_GHOST {
		t.Fatalf("file %d remapped as %v, want GHOST", id, r.GetRemapType())
	}
	rd, err := im.dir.Open(image.GhostFile, r.GetRemapId())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var e pb.GhostFileEntry
	if err := rd.Next(&e); err != nil {
		t.Fatal(err)
	}
	var chunks []ghostChunk
	if !e.GetChunks() {
		b, err := io.ReadAll(rd.Payload())
		if err != nil {
			t.Fatal(err)
		}
		return r.GetRemapId(), &e, append(chunks, ghostChunk{0, b})
	}
	for {
		var c pb.GhostChunkEntry
		if err := rd.Next(&c); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rd.Payload())
		if err != nil || uint64(len(b)) != c.GetLen() {
			t.Fatalf("ghost %d: chunk %v with %d bytes: %v", r.GetRemapId(), &c, len(b), err)
		}
		chunks = append(chunks, ghostChunk{c.GetOff(), b})
	}
	return r.GetRemapId(), &e, chunks
}

type ghostChunk struct {
	Off  uint64
	Data []byte
}

// TestDumpUnlinked dumps test/subjects/unlinked.c with --link-remap and
// checks, as cryo and crit read the images, that every unlinked file is
// saved once per inode: a ghost with its mode (set-id and sticky bits
// too), times and data ranges, a link remap for the file still linked
// elsewhere, a directory ghost shared by a descriptor and the working
// directory.
func TestDumpUnlinked(t *testing.T) {
	testutil.RequireRoot(t)
	s, dir := startUnlinked(t, "attr", "shared", "linked", "holes", "dir")
	log, buf := newLog()
	imgDir := filepath.Join(t.TempDir(), "images")
	if _, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: imgDir, LinkRemap: true, LeaveRunning: true, Log: log}); err != nil {
		t.Fatalf("dump: %v\nlog:\n%s", err, buf)
	}
	s.WaitTicks(t, 3)
	critDecode(t, imgDir)
	im := readImages(t, imgDir, s.Pid)
	fd := func(k string) uint32 { return uint32(s.ReadyUint(t, k)) }
	reg := func(k, name string) *pb.FileEntry {
		t.Helper()
		f := im.file(t, fd(k))
		if f.GetReg().GetName() != filepath.Join(dir, name) {
			t.Errorf("%s: entry %v, want the name %s", k, f, filepath.Join(dir, name))
		}
		return f
	}

	// attr: no chunks for a small file; the mode and mtime as they were.
	_, e, chunks := im.ghostOf(t, reg("attr", "attr").GetId())
	if e.GetMode() != unix.S_IFREG|attrMode || e.GetMtim().GetTvSec() != attrMtime || e.GetChunks() || e.Atim == nil {
		t.Errorf("attr ghost: %v, want mode %#o and mtime %d", e, unix.S_IFREG|attrMode, attrMtime)
	}
	if diff := cmp.Diff([]ghostChunk{{0, []byte(attrData)}}, chunks); diff != "" {
		t.Errorf("attr ghost data (-want +got):\n%s", diff)
	}

	// shared: two descriptions and two mappings, one ghost.
	s1, s2 := reg("shared1", "shared"), reg("shared2", "shared")
	if s1.GetId() == s2.GetId() {
		t.Errorf("shared1 and shared2 share an entry; they are two open file descriptions")
	}
	gid, e, chunks := im.ghostOf(t, s1.GetId())
	if g2, _, _ := im.ghostOf(t, s2.GetId()); g2 != gid {
		t.Errorf("shared1 and shared2 remapped to ghosts %d and %d, want one", gid, g2)
	}
	for _, k := range []string{"map1", "map2"} {
		v := im.vma(t, s.ReadyUint(t, k))
		if f := im.files[uint32(v.GetShmid())]; f.GetReg().GetName() != filepath.Join(dir, "shared") {
			t.Errorf("%s: VMA file %v", k, f)
		}
		if g, _, _ := im.ghostOf(t, uint32(v.GetShmid())); g != gid {
			t.Errorf("%s: the mapping's file is remapped to ghost %d, want %d", k, g, gid)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join("/proc", strconv.Itoa(s.Pid), "fd", s.Ready["shared1"]), &st); err != nil {
		t.Fatal(err)
	}
	if !e.GetChunks() || e.GetSize() != sharedSize || e.GetIno() != st.Ino || len(chunks) != 1 || len(chunks[0].Data) != sharedSize {
		t.Errorf("shared ghost: %v with %d chunks, want inode %d, size %d, in one chunk", e, len(chunks), st.Ino, sharedSize)
	}
	if ghosts, _ := filepath.Glob(filepath.Join(imgDir, "ghost-file-*.img")); len(ghosts) != 4 {
		t.Errorf("ghost images %v, want 4: attr, shared, holes and the directory", ghosts)
	}

	// holes: only the data ranges.
	hid, e, chunks := im.ghostOf(t, reg("holes", "holes").GetId())
	want := []ghostChunk{{unlinkedBlock, unlinkedPattern(unlinkedBlock, 11)}, {3 * unlinkedBlock, unlinkedPattern(unlinkedBlock, 33)}}
	if !e.GetChunks() || e.GetSize() != holesBlocks*unlinkedBlock {
		t.Errorf("holes ghost: %v, want chunks and size %d", e, holesBlocks*unlinkedBlock)
	}
	if diff := cmp.Diff(want, chunks); diff != "" {
		t.Errorf("holes ghost chunks (-want +got):\n%s", diff)
	}
	// crit reads the same chunks.
	out, err := exec.Command("crit", "decode", "-i", filepath.Join(imgDir, image.GhostFile.FileName(hid))).Output()
	if err != nil {
		t.Fatalf("crit decode the holes ghost: %v", err)
	}
	var critGhost struct {
		Entries []struct {
			Chunks   bool
			Size     uint64
			Off, Len uint64
		}
	}
	if err := json.Unmarshal(out, &critGhost); err != nil {
		t.Fatal(err)
	}
	if g := critGhost.Entries; len(g) != 3 || !g[0].Chunks || g[0].Size != holesBlocks*unlinkedBlock ||
		g[1].Off != unlinkedBlock || g[1].Len != unlinkedBlock || g[2].Off != 3*unlinkedBlock || g[2].Len != unlinkedBlock {
		t.Errorf("crit decodes the holes ghost as %+v", critGhost.Entries)
	}

	// linked: a link remap beside the old name, on the same inode.
	lk := reg("linked", "linked")
	r := im.remapOf(t, lk.GetId())
	link := im.files[r.GetRemapId()].GetReg().GetName()
	if r.GetRemapType() != pb.RemapType_LINKED || filepath.Dir(link) != dir || !strings.HasPrefix(filepath.Base(link), "link_remap.") {
		t.Errorf("linked: remap %v to %q, want LINKED to %s/link_remap.ID", r, link, dir)
	}
	var lst, ost unix.Stat_t
	if err := unix.Stat(link, &lst); err != nil {
		t.Fatalf("the link remap: %v", err)
	}
	if err := unix.Stat(filepath.Join(dir, "linked.link"), &ost); err != nil || lst.Ino != ost.Ino {
		t.Errorf("the link remap %s is inode %d, linked.link %d (%v)", link, lst.Ino, ost.Ino, err)
	}

	// dir: the descriptor and the working directory, one ghost directory.
	did, e, _ := im.ghostOf(t, reg("dir", "gone").GetId())
	if e.GetMode() != unix.S_IFDIR|unlinkedDirMode {
		t.Errorf("directory ghost mode %#o, want %#o", e.GetMode(), unix.S_IFDIR|unlinkedDirMode)
	}
	var fsEntry pb.FsEntry
	if err := im.dir.ReadImage(image.FS, uint32(s.Pid), &fsEntry); err != nil {
		t.Fatal(err)
	}
	if cwd := im.files[fsEntry.GetCwdId()]; cwd.GetReg().GetName() != filepath.Join(dir, "gone") {
		t.Errorf("cwd entry %v", cwd)
	}
	if g, _, _ := im.ghostOf(t, fsEntry.GetCwdId()); g != did {
		t.Errorf("the working directory is remapped to ghost %d, the descriptor to %d", g, did)
	}
	if t.Failed() {
		t.Logf("dump log:\n%s", buf)
	}
}

// TestDumpUnlinkedBig dumps a process holding an unlinked file of 48 MiB:
// the dump writes the file's ghost image as it reads the file, and
// allocates far less than the file (it held the whole file before); with
// a smaller ghost limit the dump refuses it.
func TestDumpUnlinkedBig(t *testing.T) {
	testutil.RequireRoot(t)
	const size = 48 << 20 // BIG_SIZE in unlinked.c
	s, dir := startUnlinked(t, "big")
	imgDir := filepath.Join(t.TempDir(), "images")
	// Beyond a ghost limit (criu's --ghost-limit), refused, naming the
	// file, and the process goes on.
	_, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: imgDir, GhostLimit: 8 << 20})
	if !errors.Is(err, dump.ErrUnsupported) || !strings.Contains(err.Error(), filepath.Join(dir, "big")) || !strings.Contains(err.Error(), "--ghost-limit") {
		t.Fatalf("dump with a ghost limit of 8 MiB: %v, want a refusal naming the file and --ghost-limit", err)
	}
	if _, err := os.Stat(imgDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("images left behind: %v", err)
	}
	s.WaitTicks(t, s.Ticks()+3)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: imgDir, LeaveRunning: true})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > size/4 {
		t.Errorf("the dump allocated %d bytes, a file of %d unlinked", got, size)
	}
	s.WaitTicks(t, s.Ticks()+3)
	ghosts, _ := filepath.Glob(filepath.Join(imgDir, "ghost-file-*.img"))
	if len(ghosts) != 1 {
		t.Fatalf("ghost images %v, want one", ghosts)
	}
	if st, err := os.Stat(ghosts[0]); err != nil || st.Size() < size {
		t.Errorf("ghost image %s: %v, want %d bytes of data at least", ghosts[0], err, size)
	}
}

// TestDumpUnlinkedRefused checks that an unlinked file still linked
// elsewhere is refused without --link-remap, naming the flag, and that a
// dump that fails removes the link it made (either way the target's
// filesystem is as it was).
func TestDumpUnlinkedRefused(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name   string
		part   string
		opts   dump.Options
		is     error
		saying string
	}{
		{"without --link-remap", "linked", dump.Options{}, dump.ErrUnsupported, "--link-remap"},
		{"failed dump", "linked", dump.Options{LinkRemap: true, FailAt: "sync"}, dump.ErrInjected, "sync"},
		{"deleted /dev/kmsg", "devkmsg", dump.Options{}, dump.ErrUnsupported, "only null, zero, full, random and urandom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := startUnlinked(t, tc.part)
			before, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			opts := tc.opts
			opts.Pid, opts.Dir, opts.LeaveRunning = s.Pid, filepath.Join(t.TempDir(), "images"), true
			_, err = dump.Dump(context.Background(), opts)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.saying) {
				t.Fatalf("dump: %v, want %v saying %q", err, tc.is, tc.saying)
			}
			t.Logf("refused: %v", err)
			after, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			names := func(es []os.DirEntry) (n []string) {
				for _, e := range es {
					n = append(n, e.Name())
				}
				return n
			}
			if diff := cmp.Diff(names(before), names(after)); diff != "" {
				t.Errorf("the failed dump changed %s (-before +after):\n%s", dir, diff)
			}
			s.WaitTicks(t, 3)
		})
	}
}
