package files

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
)

// TestRepairWindow checks the window a connection is given back with
// against what the kernel takes (tcp_repair_set_window: snd_wl1 not past
// rcv_nxt + rcv_wnd, rcv_wup not past rcv_nxt).
func TestRepairWindow(t *testing.T) {
	for _, tc := range []struct {
		name  string
		s     *pb.TcpStreamEntry
		finIn uint32
		want  kernel.TCPRepairWindow
	}{
		{
			name: "as dumped",
			s:    &pb.TcpStreamEntry{InqSeq: 1521029338, SndWl1: pb.Uint32(1521029334), SndWnd: pb.Uint32(65536), MaxWindow: pb.Uint32(65536), RcvWnd: pb.Uint32(65536), RcvWup: pb.Uint32(1521029338)},
			want: kernel.TCPRepairWindow{SndWl1: 1521029334, SndWnd: 65536, MaxWindow: 65536, RcvWnd: 65536, RcvWup: 1521029338},
		},
		{
			// zdtm socket-tcpbuf-local, dumped here: segments held out of
			// order had moved the send window from past the receive
			// window, and the restore failed with EINVAL.
			name: "window moved by a segment out of order",
			s:    &pb.TcpStreamEntry{InqSeq: 3834683644, SndWl1: pb.Uint32(3835011059), SndWnd: pb.Uint32(9216), MaxWindow: pb.Uint32(95232), RcvWnd: pb.Uint32(131072), RcvWup: pb.Uint32(3834683644)},
			want: kernel.TCPRepairWindow{SndWl1: 3834683644, SndWnd: 9216, MaxWindow: 95232, RcvWnd: 131072, RcvWup: 3834683644},
		},
		{
			name:  "advertised past the peer's FIN",
			s:     &pb.TcpStreamEntry{InqSeq: 1001, SndWl1: pb.Uint32(1000), SndWnd: pb.Uint32(100), MaxWindow: pb.Uint32(100), RcvWnd: pb.Uint32(100), RcvWup: pb.Uint32(1001)},
			finIn: 1,
			want:  kernel.TCPRepairWindow{SndWl1: 1000, SndWnd: 100, MaxWindow: 100, RcvWnd: 100, RcvWup: 1000},
		},
		{
			name: "across the wrap of sequence numbers",
			s:    &pb.TcpStreamEntry{InqSeq: 10, SndWl1: pb.Uint32(0xfffffff0), SndWnd: pb.Uint32(100), MaxWindow: pb.Uint32(100), RcvWnd: pb.Uint32(100), RcvWup: pb.Uint32(0xfffffffa)},
			want: kernel.TCPRepairWindow{SndWl1: 0xfffffff0, SndWnd: 100, MaxWindow: 100, RcvWnd: 100, RcvWup: 0xfffffffa},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, repairWindow(tc.s, tc.finIn)); d != "" {
				t.Errorf("repairWindow (-want +got):\n%s", d)
			}
		})
	}
}
