//go:build cryodebug

package ptrace

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestTracerThreadChecked checks that a cryodebug build catches a ptrace
// request made off the tracer thread.
func TestTracerThreadChecked(t *testing.T) {
	testutil.RequireRoot(t)
	tr, err := Spawn("/bin/sleep", []string{"sleep", "10"}, &os.ProcAttr{}, unix.PTRACE_O_EXITKILL)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Kill()
	if _, err := tr.GetRegs(tr.Pid()); err != nil {
		t.Fatalf("on the tracer thread: %v", err)
	}
	got := make(chan any, 1)
	go func() {
		runtime.LockOSThread() // another thread than the session's
		defer runtime.UnlockOSThread()
		defer func() { got <- recover() }()
		var regs unix.PtraceRegs
		getRegs(tr.Pid(), &regs)
	}()
	if p := <-got; p == nil || !strings.Contains(p.(string), "tracer-thread contract") {
		t.Errorf("getRegs off the tracer thread: panic %v, want the contract named", p)
	}
}
