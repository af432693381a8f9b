package cmd_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkit/testnet"
)

// serveEnv are the variables that would override the test's config file.
var serveEnv = []string{
	"DSN", "SECRETS_DEFAULT", "SECRETS_CIPHER", "SECRETS_FILE_SIGNATURE",
	"SERVE_PUBLIC_HOST", "SERVE_PUBLIC_PORT", "SERVE_ADMIN_HOST", "SERVE_ADMIN_PORT",
	"SERVE_ADMIN_API_KEYS", "LOG_LEVEL", "LOG_FORMAT",
}

const testSecretsYAML = `secrets:
  default: ["serve-test-system-secret-0123456789abcdef"]
  cipher: ["0123456789abcdef0123456789abcdef"]
  file_signature: serve-test-file-signature-0123456789abcdef
`

// serveConfig writes a config file for a SQLite file in a temp dir on two free ports.
func serveConfig(t *testing.T, extra string) (file string, publicPort, adminPort int) {
	t.Helper()
	unsetEnv(t, serveEnv...)
	dir := t.TempDir()
	publicPort, adminPort = testnet.FreePort(t), testnet.FreePort(t)
	for adminPort == publicPort {
		adminPort = testnet.FreePort(t)
	}
	yaml := fmt.Sprintf(`dsn: sqlite://%s?_fk=true
log:
  level: error
serve:
  public:
    host: 127.0.0.1
    port: %d
    base_url: http://127.0.0.1:%d
  admin:
    host: 127.0.0.1
    port: %d
`, filepath.Join(dir, "pvauth.sqlite"), publicPort, publicPort, adminPort) + extra
	file = filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, publicPort, adminPort
}

// serveInProcess runs `pvauth serve args...` and returns its result; a serve that is
// still running after limit is stopped with SIGINT (which it handles) and fails the test.
func serveInProcess(t *testing.T, limit time.Duration, args ...string) cliResult {
	t.Helper()
	done := make(chan cliResult, 1)
	go func() { done <- runPVAuth(t, "", append([]string{"serve"}, args...)...) }()
	select {
	case r := <-done:
		return r
	case <-time.After(limit):
		_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
		<-done
		t.Fatalf("serve %v did not stop within %s", args, limit)
		return cliResult{}
	}
}

func TestServeRefusesMissingSecrets(t *testing.T) {
	file, _, _ := serveConfig(t, "")
	r := serveInProcess(t, 30*time.Second, "--config", file)
	mustFail(t, r, "secrets.default", "SECRETS_DEFAULT", "--dev")
}

func TestServeRefusesUnmigratedDatabase(t *testing.T) {
	file, _, _ := serveConfig(t, testSecretsYAML)
	r := serveInProcess(t, 30*time.Second, "--config", file)
	mustFail(t, r, "not migrated", "migrate sql")
}

// PROFILING takes cpu or mem; anything else stops the start, before the database opens.
func TestServeRefusesUnknownProfiling(t *testing.T) {
	file, _, _ := serveConfig(t, "")
	t.Setenv("PROFILING", "gpu")
	r := serveInProcess(t, 30*time.Second, "--dev", "--config", file)
	mustFail(t, r, `PROFILING="gpu"`, "cpu or mem")
	if _, err := os.Stat(filepath.Join(filepath.Dir(file), "pvauth.sqlite")); err == nil {
		t.Error("the database was opened before PROFILING was checked")
	}
}

// With --dev the same unmigrated file and no secrets start: it migrates, makes
// throw-away secrets and serves both ports until interrupted. With PROFILING=cpu it
// leaves cpu.pprof in its working directory.
func TestServeDevStartsAndStops(t *testing.T) {
	file, publicPort, adminPort := serveConfig(t, "")
	t.Chdir(filepath.Dir(file))
	t.Setenv("PROFILING", "cpu")
	done := make(chan cliResult, 1)
	go func() { done <- runPVAuth(t, "", "serve", "--dev", "--config", file) }()

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for _, port := range []int{publicPort, adminPort} {
		url := fmt.Sprintf("http://127.0.0.1:%d/health/ready", port)
		for {
			select {
			case r := <-done:
				t.Fatalf("serve --dev stopped early: %v\n%s", r.Err, r.Stderr)
			default:
			}
			resp, err := client.Get(url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
				<-done
				t.Fatalf("%s never became ready (last error %v)", url, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The listeners are up, so serve's signal handler is installed: interrupt it.
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.Err != nil {
			t.Fatalf("serve --dev ended with %v", r.Err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("serve --dev did not shut down after SIGINT")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(file), "pvauth.sqlite")); err != nil {
		t.Errorf("no SQLite file: %v", err)
	}
	if st, err := os.Stat(filepath.Join(filepath.Dir(file), "cpu.pprof")); err != nil || st.Size() == 0 {
		t.Errorf("PROFILING=cpu left no profile: %v", err)
	}
}

// An admin port reachable off this machine without API keys would let anyone on the
// network create super-admins: serve refuses it (API.md §5), but --dev allows it.
func TestServeRefusesExposedAdminWithoutKeys(t *testing.T) {
	file, _, _ := serveConfig(t, testSecretsYAML)
	t.Setenv("SERVE_ADMIN_HOST", "0.0.0.0")
	r := serveInProcess(t, 30*time.Second, "--config", file)
	mustFail(t, r, "serve.admin.api_keys", "0.0.0.0")
	if _, err := os.Stat(filepath.Join(filepath.Dir(file), "pvauth.sqlite")); err == nil {
		t.Error("the database was opened before the admin exposure was checked")
	}
}
