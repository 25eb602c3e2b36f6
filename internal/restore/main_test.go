package restore_test

import (
	"os"
	"testing"

	"github.com/cryo-cr/cryo/internal/testutil"
)

// A dump leaves its killed target to its parent, the test process, and a
// restore makes the restored process a child of it: as a child subreaper
// it reaps whatever the tests leave.
func TestMain(m *testing.M) { os.Exit(testutil.Run(m)) }
