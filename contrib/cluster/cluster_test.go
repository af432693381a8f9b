// Package cluster holds run.sh, the local multi-replica cluster (PostgreSQL, Redis, pvauth
// replicas, HAProxy); this test starts it, logs in through HAProxy and stops it.
package cluster

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkit"
)

// TestClusterUpLoginDown runs `run.sh up` with three replicas, creates an identity through
// HAProxy's admin frontend, logs in through its public frontend from another loopback
// address (the replica must see that address: X-Forwarded-For from a trusted proxy),
// checks that the login limit holds for the whole cluster (Redis), and runs `down`.
// Skips without haproxy, redis-server or PostgreSQL 15 (CI does not install haproxy).
func TestClusterUpLoginDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Redis, three replicas and HAProxy")
	}
	pgBin := os.Getenv("PG_BIN")
	if pgBin == "" {
		pgBin = "/usr/lib/postgresql/15/bin"
	}
	if _, err := os.Stat(filepath.Join(pgBin, "initdb")); err != nil {
		t.Skip("PostgreSQL 15 binaries not found")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not found")
	}
	if _, err := exec.LookPath("haproxy"); err != nil {
		if _, err := os.Stat("/usr/sbin/haproxy"); err != nil {
			t.Skip("haproxy not found (apt-get install haproxy)")
		}
	}
	if os.Geteuid() == 0 {
		if _, err := exec.Command("id", "postgres").CombinedOutput(); err != nil {
			t.Skip("running as root needs the postgres user")
		}
	}

	bin := filepath.Join(t.TempDir(), "pvauth")
	build := exec.Command("go", "build", "-tags", "sqlite", "-o", bin, "../../cmd/pvauth")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// The state directory must be reachable by the postgres user when we are root, and
	// short enough for PostgreSQL's unix socket path.
	dir, err := os.MkdirTemp("", "pvauth-cluster-test")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	var base int
	var env []string
	run := func(args ...string) (string, error) {
		cmd := exec.Command("bash", append([]string{"run.sh"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	up := false
	for attempt := 0; attempt < 4 && !up; attempt++ {
		base = 20000 + rand.IntN(30000)
		if !portsFree(base) {
			continue
		}
		env = []string{"CLUSTER_DIR=" + dir, fmt.Sprintf("CLUSTER_PORT_BASE=%d", base), "PVAUTH_BIN=" + bin,
			"PG_BIN=" + pgBin, "LOG_LEVEL=info"} // the request log shows the client address
		out, err := run("up", "--replicas", "3")
		if err != nil {
			if strings.Contains(out, "is in use") {
				continue // taken in between: another base
			}
			t.Fatalf("run.sh up: %v\n%s", err, out)
		}
		up = true
		t.Logf("run.sh up:\n%s", out)
	}
	if !up {
		t.Fatal("no free port range found")
	}
	t.Cleanup(func() {
		if out, err := run("down"); err != nil {
			t.Errorf("run.sh down: %v\n%s", err, out)
		}
	})

	if out, err := run("status"); err != nil {
		t.Fatalf("run.sh status: %v\n%s", err, out)
	} else if strings.Count(out, " UP ") < 8 { // 3 public + 3 admin + the 2 one-replica backends
		t.Fatalf("HAProxy does not see every replica up:\n%s", out)
	}

	public := fmt.Sprintf("http://127.0.0.1:%d", base)
	admin := fmt.Sprintf("http://127.0.0.1:%d", base+1)
	email := fmt.Sprintf("cluster-%d@example.com", rand.Int())
	const password = "correct horse battery staple 7"
	direct := &http.Client{Timeout: 10 * time.Second}
	status, body := postJSON(t, direct, admin+"/admin/identities", map[string]any{"email": email, "password": password})
	if status != http.StatusCreated {
		t.Fatalf("create identity through HAProxy: %d %s", status, body)
	}

	// A client on 127.0.0.2: HAProxy adds it to X-Forwarded-For, and the replica, which
	// trusts 127.0.0.1 (HAProxy), must log it as the client address.
	other := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext,
	}}
	status, body = postJSON(t, other, public+"/api/v1/auth/login", map[string]any{"email": email, "password": password})
	if status != http.StatusOK || !strings.Contains(body, "pvauth_pending_") {
		t.Fatalf("login through HAProxy: %d %s", status, body)
	}
	// The request log is written after the answer: give it a moment.
	deadline := time.Now().Add(5 * time.Second)
	for {
		logs := replicaLogs(t, dir)
		if strings.Contains(logs, `"path":"/api/v1/auth/login"`) && strings.Contains(logs, `"ip":"127.0.0.2"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replica logged the login from 127.0.0.2 (X-Forwarded-For not believed?)")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The login limit (10 failures per email and network) holds across the replicas:
	// HAProxy spreads the attempts, Redis counts them all.
	var codes []int
	for i := 0; i < 12; i++ {
		status, _ := postJSON(t, direct, public+"/api/v1/auth/login", map[string]any{"email": email, "password": "wrong"})
		codes = append(codes, status)
	}
	for i, c := range codes {
		want := http.StatusUnauthorized
		if i >= 10 {
			want = http.StatusTooManyRequests
		}
		if c != want {
			t.Fatalf("failed logins through HAProxy answered %v; want 10×401 then 429", codes)
		}
	}
	// …and they were spread: every replica answered some of them.
	for i := 0; i < 3; i++ {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("replica-%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`"path":"/api/v1/auth/login"`)) {
			t.Errorf("replica %d answered no login: HAProxy did not spread the requests", i)
		}
	}
}

func portsFree(base int) bool {
	for _, off := range []int{0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 15, 299, 352} {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", base+off), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return false
		}
	}
	return true
}

// postJSON is testkit.Do posting v, failing the test on a transport error.
func postJSON(t *testing.T, c *http.Client, url string, v any) (int, string) {
	t.Helper()
	status, raw, err := testkit.Do(c, http.MethodPost, url, "", v)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return status, string(raw)
}

func replicaLogs(t *testing.T, dir string) string {
	t.Helper()
	var all strings.Builder
	files, _ := filepath.Glob(filepath.Join(dir, "replica-*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	return all.String()
}
