package e2e

import (
	"os"
	"testing"

	"github.com/pgha/pgha/fence"
)

// TestMain lets this test binary serve as the fence keeper that the
// daemons it runs start (they start their own program).
func TestMain(m *testing.M) {
	fence.RunKeeperIfAsked()
	os.Exit(m.Run())
}
