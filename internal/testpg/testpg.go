// Package testpg runs a PostgreSQL server of a test's own, which the test may stop and
// start again (outages, restarts): the test command's shared server is used by other
// packages at the same time and must never go away.
package testpg

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pvpipe/pvauth/internal/testkit/testnet"
)

// EnvBin names the variable that overrides the directory of initdb and pg_ctl.
const EnvBin = "PG_BIN"

// DefaultBin is where Debian's postgresql-15 package puts them.
const DefaultBin = "/usr/lib/postgresql/15/bin"

// Server is a private PostgreSQL: a data directory in a short temporary directory (it
// also holds the unix socket) and a loopback port.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	data string
	// Port is the loopback TCP port the server listens on.
	Port int
	asPG bool // run the binaries as the postgres user (initdb refuses root)
}

// New initializes a data directory and starts the server on a free loopback port; it is
// stopped and removed when the test ends. Without the PostgreSQL binaries the test is
// skipped, or fails when CI is set. extraConf lines are appended to postgresql.conf.
func New(t testing.TB, extraConf ...string) *Server {
	t.Helper()
	bin := os.Getenv(EnvBin)
	if bin == "" {
		bin = DefaultBin
	}
	for _, b := range []string{"initdb", "pg_ctl"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			msg := fmt.Sprintf("testpg: %s not found (apt-get install postgresql-15, or set %s)", filepath.Join(bin, b), EnvBin)
			if os.Getenv("CI") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	s := &Server{t: t, bin: bin, asPG: os.Geteuid() == 0}
	// Short, under /tmp: a unix socket path must stay under about 100 bytes, and as root
	// the directory must belong to postgres (t.TempDir's parents are root's, mode 0700).
	dir, err := os.MkdirTemp("/tmp", "pvauth-testpg-")
	if err != nil {
		t.Fatal(err)
	}
	s.dir, s.data = dir, filepath.Join(dir, "data")
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if s.asPG {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("testpg: running as root needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := s.run("initdb", "-D", s.data, "-U", "postgres", "--auth=trust", "--no-sync", "--locale=C", "--encoding=UTF8"); err != nil {
		t.Fatalf("testpg: initdb: %v\n%s", err, out)
	}
	s.Port = testnet.FreePort(t)
	conf := append([]string{
		"listen_addresses = '127.0.0.1'",
		"port = " + strconv.Itoa(s.Port),
		"unix_socket_directories = '" + dir + "'",
		"fsync = off", "synchronous_commit = off", "full_page_writes = off",
		"max_connections = 100",
	}, extraConf...)
	if out, err := s.run("sh", "-c", "cat >> "+shellQuote(filepath.Join(s.data, "postgresql.conf")), strings.Join(conf, "\n")+"\n"); err != nil {
		t.Fatalf("testpg: writing postgresql.conf: %v\n%s", err, out)
	}
	s.Start(true)
	t.Cleanup(func() { _, _ = s.run("pg_ctl", "-D", s.data, "-m", "immediate", "-w", "stop") })
	return s
}

// DSN is the server's URL for the postgres superuser and database.
func (s *Server) DSN() string {
	return "postgres://postgres@127.0.0.1:" + strconv.Itoa(s.Port) + "/postgres?sslmode=disable"
}

// Start starts the server; with wait, it returns once the server accepts connections,
// otherwise at once (it is then still starting up: connections get SQLSTATE 57P03).
func (s *Server) Start(wait bool) {
	s.t.Helper()
	args := []string{"-D", s.data, "-l", filepath.Join(s.dir, "postgres.log"), "-W", "start"}
	if wait {
		args = []string{"-D", s.data, "-l", filepath.Join(s.dir, "postgres.log"), "-w", "-t", "30", "start"}
	}
	if out, err := s.run("pg_ctl", args...); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
		s.t.Fatalf("testpg: pg_ctl start: %v\n%s\n%s", err, out, log)
	}
}

// Stop stops the server with mode ("fast": sessions are ended with SQLSTATE 57P01;
// "smart": it waits for them and refuses new ones with 57P03; "immediate"); with wait,
// it returns once the server is down.
func (s *Server) Stop(mode string, wait bool) {
	s.t.Helper()
	w := "-W"
	if wait {
		w = "-w"
	}
	if out, err := s.run("pg_ctl", "-D", s.data, "-m", mode, w, "stop"); err != nil {
		s.t.Fatalf("testpg: pg_ctl stop: %v\n%s", err, out)
	}
}

// WaitReady waits until the server accepts sessions (past its start-up, at most d).
func (s *Server) WaitReady(d time.Duration) {
	s.t.Helper()
	var err error
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var c *pgx.Conn
		if c, err = pgx.Connect(ctx, s.DSN()); err == nil {
			err = c.Ping(ctx)
			c.Close(ctx)
		}
		cancel()
		if err == nil {
			return
		}
	}
	s.t.Fatalf("testpg: not accepting sessions after %s: %v", d, err)
}

// WaitDown waits until the server refuses TCP connections (at most d).
func (s *Server) WaitDown(d time.Duration) {
	s.t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
	}
	s.t.Fatalf("testpg: %s still accepting connections after %s", addr, d)
}

// run runs a binary of bin (or sh) as the database owner; stdin, when given, is fed in.
func (s *Server) run(name string, args ...string) ([]byte, error) {
	var stdin string
	if name == "sh" {
		stdin, args = args[len(args)-1], args[:len(args)-1]
	} else {
		name = filepath.Join(s.bin, name)
	}
	var cmd *exec.Cmd
	if s.asPG {
		line := "cd / && LC_ALL=C exec " + shellQuote(name)
		for _, a := range args {
			line += " " + shellQuote(a)
		}
		cmd = exec.Command("su", "postgres", "-s", "/bin/sh", "-c", line)
	} else {
		cmd = exec.Command(name, args...)
		cmd.Dir = "/"
		cmd.Env = append(os.Environ(), "LC_ALL=C")
	}
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	return cmd.CombinedOutput()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
