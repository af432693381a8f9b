// Package testredis gives tests a Redis: the one the test command started
// (TEST_REDIS_URL), or a private redis-server process a test can stop and start again.
package testredis

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkit/testnet"
)

// EnvURL names the variable the test command sets to its Redis server's URL.
const EnvURL = "TEST_REDIS_URL"

// unavailable skips the test, or fails it when CI is set.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// URL returns the test command's Redis URL (each test should use keys of its own: the
// counters are keyed by random emails and addresses). Without TEST_REDIS_URL the test
// is skipped, or fails when CI is set.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		unavailable(t, "%s is not set: run the tests with scripts/test.sh, which starts Redis", EnvURL)
	}
	return u
}

// Server is a redis-server process of the test's own.
type Server struct {
	t    testing.TB
	bin  string
	Port int
	cmd  *exec.Cmd
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://127.0.0.1:" + strconv.Itoa(s.Port) + "/0" }

// NewServer starts redis-server (from PATH) on a free loopback port, without
// persistence; it is stopped when the test ends. Without redis-server the test is
// skipped, or fails when CI is set.
func NewServer(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "redis-server not found on PATH (apt-get install redis-server)")
	}
	s := &Server{t: t, bin: bin, Port: testnet.FreePort(t)}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start starts the server on its port (again, after Stop) and waits until it accepts
// connections.
func (s *Server) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("testredis: already running")
	}
	cmd := exec.Command(s.bin, "--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.t.TempDir())
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	s.cmd = cmd
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	for i := 0; i < 100; i++ {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Stop()
	s.t.Fatalf("redis-server did not accept connections on %s within 5s", addr)
}

// Stop kills the server and waits for it to exit. Stopping a stopped server is a no-op.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}
