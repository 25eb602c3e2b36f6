package kernel_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// newTable queues the making of an inet table.
func newTable(b *kernel.NftBatch, name string, flags uint32) {
	b.Add(unix.NFT_MSG_NEWTABLE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, unix.NFPROTO_INET)
	b.AttrString(unix.NFTA_TABLE_NAME, name)
	b.AttrBE32(unix.NFTA_TABLE_FLAGS, flags)
}

// inetTable is the inet table of that name, and whether there is one.
func inetTable(t *testing.T, name string) (kernel.NftTable, bool) {
	t.Helper()
	ts, err := kernel.NftTables(unix.NFPROTO_INET)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ts, func(t kernel.NftTable) bool { return t.Name == name })
	if i < 0 {
		return kernel.NftTable{}, false
	}
	return ts[i], true
}

// TestNftBatch commits batches: one with a message that fails returns
// that message's errno and applies none of the others; a table made owned
// is listed so, and goes with its socket.
func TestNftBatch(t *testing.T) {
	testutil.RequireRoot(t)
	s, err := kernel.OpenNftSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	name := fmt.Sprintf("cryo-test-%d-kernel", os.Getpid())

	b := s.Batch(0)
	newTable(b, name, kernel.NftTableFOwner)
	b.Add(unix.NFT_MSG_NEWCHAIN, unix.NLM_F_CREATE, unix.NFPROTO_INET)
	b.AttrString(unix.NFTA_CHAIN_TABLE, name+"-missing")
	b.AttrString(unix.NFTA_CHAIN_NAME, "input")
	if err := s.Commit(b); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("batch with a chain of no table: %v, want ENOENT", err)
	}
	if _, ok := inetTable(t, name); ok {
		t.Fatal("a failed batch made its table")
	}

	b = s.Batch(0)
	newTable(b, name, kernel.NftTableFOwner)
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	if tb, ok := inetTable(t, name); !ok || tb.Flags&kernel.NftTableFOwner == 0 {
		t.Fatalf("table made owned: %+v, exists %v", tb, ok)
	}

	b = s.Batch(0)
	b.Add(unix.NFT_MSG_NEWSETELEM, 0, unix.NFPROTO_INET)
	b.Attr(unix.NFTA_SET_ELEM_LIST_ELEMENTS, make([]byte, 1<<16))
	if err := s.Commit(b); err == nil {
		t.Error("batch with an attribute of 64 KiB: no error")
	}
	b = s.Batch(0)
	newTable(b, name, 0)
	if err := s.Commit(b); !errors.Is(err, unix.EEXIST) {
		t.Errorf("the table again: %v, want EEXIST", err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := inetTable(t, name); ok {
		t.Error("owned table outlived its socket")
	}
}

func TestParseNftTables(t *testing.T) {
	// An owned table and another, then NLMSG_DONE.
	real, err := os.ReadFile("testdata/nftables/gettable-inet.bin")
	if err != nil {
		t.Fatal(err)
	}
	realTables := []kernel.NftTable{{"cryo-capture-owned", kernel.NftTableFOwner}, {"cryo-capture-kept", 0}}
	const newTable = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE
	nfgen := []byte{unix.NFPROTO_INET, 0, 0, 0}
	name := nlAttr(unix.NFTA_TABLE_NAME, []byte("t\x00"))
	table := func(attrs ...[]byte) []byte {
		return nlMessage(newTable, unix.NLM_F_MULTI, 1, slices.Concat(append([][]byte{nfgen}, attrs...)...))
	}
	done := nlMessage(unix.NLMSG_DONE, unix.NLM_F_MULTI, 1, make([]byte, 4))
	first := real[:binary.NativeEndian.Uint32(real)]
	enobufs := -int32(unix.ENOBUFS)
	for _, tc := range []struct {
		name     string
		b        []byte
		want     []kernel.NftTable
		wantDone bool
		wantErr  error
	}{
		{name: "this kernel's", b: real, want: realTables, wantDone: true},
		{name: "no end yet", b: real[:len(real)-20], want: realTables},
		{name: "end alone", b: done, wantDone: true},
		{name: "end of a failed dump", b: nlMessage(unix.NLMSG_DONE, unix.NLM_F_MULTI, 1, binary.NativeEndian.AppendUint32(nil, uint32(enobufs))), wantErr: unix.ENOBUFS},
		{name: "end cut", b: nlMessage(unix.NLMSG_DONE, unix.NLM_F_MULTI, 1, make([]byte, 3)), wantErr: kernel.ErrNetlink},
		{name: "a table of no flags attribute", b: table(name), want: []kernel.NftTable{{Name: "t"}}},
		{name: "an error", b: nlError(1, -int32(unix.EPERM)), wantErr: unix.EPERM},
		{name: "an acknowledgement", b: nlError(1, 0), wantErr: kernel.ErrNetlink},
		{name: "error cut", b: nlMessage(unix.NLMSG_ERROR, 0, 1, nil), wantErr: kernel.ErrNetlink},
		{name: "another type", b: nlMessage(newTable+1, 0, 1, nfgen), wantErr: kernel.ErrNetlink},
		{name: "interrupted", b: nlMessage(unix.NLMSG_DONE, unix.NLM_F_MULTI|unix.NLM_F_DUMP_INTR, 1, make([]byte, 4)), wantErr: unix.EINTR},
		{name: "header cut", b: real[:15], wantErr: kernel.ErrNetlink},
		{name: "longer than the read", b: first[:len(first)-1], wantErr: kernel.ErrNetlink},
		{name: "nfgenmsg cut", b: nlMessage(newTable, 0, 1, nfgen[:3]), wantErr: kernel.ErrNetlink},
		{name: "attribute cut", b: table(name[:5]), wantErr: kernel.ErrNetlink},
		{name: "no name", b: table(nlAttr(unix.NFTA_TABLE_FLAGS, make([]byte, 4))), wantErr: kernel.ErrNetlink},
		{name: "name not terminated", b: table(nlAttr(unix.NFTA_TABLE_NAME, []byte("t"))), wantErr: kernel.ErrNetlink},
		{name: "empty name", b: table(nlAttr(unix.NFTA_TABLE_NAME, nil)), wantErr: kernel.ErrNetlink},
		{name: "flags cut", b: table(name, nlAttr(unix.NFTA_TABLE_FLAGS, make([]byte, 3))), wantErr: kernel.ErrNetlink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, done, err := kernel.ParseNftTables(tc.b)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("ParseNftTables: %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" || done != tc.wantDone {
				t.Errorf("ParseNftTables: done %v, want %v; tables (-want +got):\n%s", done, tc.wantDone, diff)
			}
		})
	}
}

func FuzzNftTables(f *testing.F) {
	real, err := os.ReadFile("testdata/nftables/gettable-inet.bin")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(real)
	f.Fuzz(func(t *testing.T, b []byte) {
		tables, _, err := kernel.ParseNftTables(b)
		if err != nil && tables != nil {
			t.Fatalf("ParseNftTables returned tables with %v", err)
		}
	})
}
