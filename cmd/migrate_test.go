package cmd_test

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestMigrateSQLAndStatus(t *testing.T) {
	unsetEnv(t, "DSN")
	dsn := "sqlite://" + filepath.Join(t.TempDir(), "x.sqlite") + "?_fk=true"

	r := mustOK(t, runPVAuth(t, "", "migrate", "status", dsn))
	if !strings.Contains(r.Stdout, "Pending") || strings.Contains(r.Stdout, "Applied") {
		t.Fatalf("status of a fresh database:\n%s", r.Stdout)
	}

	// Without --yes it asks, and anything but y/yes aborts.
	r = runPVAuth(t, "n\n", "migrate", "sql", dsn)
	mustFail(t, r, "aborted")
	if !strings.Contains(r.Stdout, "Apply ") || !strings.Contains(r.Stdout, "[y/N]") {
		t.Errorf("no prompt: %q", r.Stdout)
	}

	r = mustOK(t, runPVAuth(t, "", "migrate", "sql", "--yes", dsn))
	if !strings.Contains(r.Stdout, "Applied ") {
		t.Fatalf("migrate sql --yes printed %q", r.Stdout)
	}
	r = mustOK(t, runPVAuth(t, "", "migrate", "status", dsn))
	if !strings.Contains(r.Stdout, "Applied") || strings.Contains(r.Stdout, "Pending") {
		t.Fatalf("status after migrating:\n%s", r.Stdout)
	}
	r = mustOK(t, runPVAuth(t, "", "migrate", "sql", "--yes", dsn))
	if !strings.Contains(r.Stdout, "up to date") {
		t.Errorf("second migrate sql printed %q", r.Stdout)
	}

	// -e takes the DSN from the environment.
	t.Setenv("DSN", dsn)
	r = mustOK(t, runPVAuth(t, "", "migrate", "sql", "-e", "--yes"))
	if !strings.Contains(r.Stdout, "up to date") {
		t.Errorf("migrate sql -e printed %q", r.Stdout)
	}
	mustFail(t, runPVAuth(t, "", "migrate", "sql", "-e", dsn), "not both")
}
