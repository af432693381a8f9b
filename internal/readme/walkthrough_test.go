// Package readme checks that the README's walkthrough runs as written.
package readme_test

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testserver"
)

var block = regexp.MustCompile("(?s)<!-- walkthrough:start -->\\s*```sh\\n(.*?)```\\s*<!-- walkthrough:end -->")

// TestREADMEWalkthrough extracts every walkthrough block of README.md and runs them, in
// order, in one bash with -euo pipefail against a live server, exactly as a reader would.
func TestREADMEWalkthrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq", "oathtool", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required for the walkthrough test (.ci/run installs it)", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := block.FindAllStringSubmatch(string(raw), -1)
	if len(blocks) < 3 {
		t.Fatalf("found %d walkthrough blocks in README.md, want at least 3", len(blocks))
	}
	var script strings.Builder
	for _, b := range blocks {
		script.WriteString(b[1])
		script.WriteString("\n")
	}
	// The README's defaults, with the OWASP argon2 parameters as a reader would have them.
	srv := testserver.Start(t, "memory", map[string]any{
		"hashers.argon2.memory_kib": 19456, "hashers.argon2.iterations": 2,
	})
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script.String())
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "PVAUTH="+srv.PublicURL, "ADMIN="+srv.AdminURL)
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("walkthrough timed out:\n%s", out)
	}
	if err != nil {
		t.Fatalf("walkthrough failed: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{`"approved"`, `"active": false`, `"hwk"`, `"success": true`} {
		if !strings.Contains(text, want) {
			t.Errorf("walkthrough output lacks %s:\n%s", want, text)
		}
	}
	if strings.Count(text, `"active": false`) < 3 {
		t.Errorf("want the three revocations to show {\"active\": false}:\n%s", text)
	}
	t.Logf("walkthrough output:\n%s", text)
}
