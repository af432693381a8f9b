package replicas_test

import (
	"os"
	"testing"

	"github.com/pvpipe/pvauth/cmd"
)

// envExec makes the test binary run as the pvauth binary: `cmd/pvauth` is nothing but
// cmd.Execute(), so this is the same program, built with the test's flags (-race, the
// sqlite tag) and without a second link of the whole server (tens of seconds on a
// loaded two-core machine), which keeps the SIGKILL test short.
const envExec = "PVAUTH_REPLICAS_TEST_EXEC"

func TestMain(m *testing.M) {
	if os.Getenv(envExec) == "1" {
		cmd.Execute()
		os.Exit(0)
	}
	os.Exit(m.Run())
}
