package demo

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/testutil"
)

func TestMain(m *testing.M) {
	MaybeRunSubject() // the demo's subject is this binary, re-executed
	os.Exit(testutil.Run(m))
}

// TestDemo runs what `make demo` shows: the subject must go on counting
// with the right time after its restore through the proxy.
func TestDemo(t *testing.T) {
	testutil.RequireRoot(t)
	var out bytes.Buffer
	if err := Run(context.Background(), &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{"cryo dump", "the process is gone", "--vdso=proxy", "went on counting"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "WRONG") {
		t.Errorf("the demo subject read a wrong time:\n%s", out.String())
	}
}
