package replicas_test

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkit"

	"github.com/pvpipe/pvauth/internal/testkit/testnet"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// proc is one `pvauth serve` process.
type proc struct {
	cmd           *exec.Cmd
	public, admin string
	stderr        *lockedBuffer
	killed        bool
}

// lockedBuffer collects a process's stderr; it is read while the process still writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// binary is the pvauth program: this test binary, which runs cmd.Execute() when envExec
// is set (see TestMain).
func binary(t *testing.T) string {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// processEnv is a clean environment: no variable of the developer's may override the
// config file (every config key has one).
func processEnv(dir string, extra ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + dir, envExec + "=1"}, extra...)
}

// startServe starts `pvauth serve --config file` on free ports (waitReady waits for it).
func startServe(t *testing.T, bin, dir, file string) *proc {
	t.Helper()
	pp, ap := testnet.FreePort(t), testnet.FreePort(t)
	p := &proc{public: fmt.Sprintf("http://127.0.0.1:%d", pp), admin: fmt.Sprintf("http://127.0.0.1:%d", ap), stderr: &lockedBuffer{}}
	p.cmd = exec.Command(bin, "serve", "--config", file)
	p.cmd.Env = processEnv(dir, fmt.Sprintf("SERVE_PUBLIC_PORT=%d", pp), fmt.Sprintf("SERVE_ADMIN_PORT=%d", ap))
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.killed {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			_ = p.cmd.Wait()
		}
		if out := p.stderr.String(); strings.Contains(out, "DATA RACE") || strings.Contains(out, "panic:") {
			t.Errorf("pvauth serve on %s:\n%s", p.public, out)
		}
	})
	return p
}

func waitReady(t *testing.T, p *proc) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(20 * time.Second); ; {
		if resp, err := c.Get(p.public + "/health/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pvauth serve not ready within 20s:\n%s", p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// srv wraps a process as a testserver.Server, for the request helpers.
func (p *proc) srv() *testserver.Server {
	return &testserver.Server{PublicURL: p.public, AdminURL: p.admin, Client: &http.Client{Timeout: 10 * time.Second}}
}

// family is one refresh family as its client sees it.
type family struct {
	sid string
	// acked is the last refresh token whose rotation the client saw answered 200 (or the
	// login's).
	acked string
	// lost, when set, is a refresh of acked that was in flight on the killed replica: the
	// client never saw its answer.
	lost bool
	n    int
	// acks counts n for the test goroutine, which reads it while the loop runs.
	acks atomic.Int64
}

func refreshSig(token string) string {
	sum := sha256.Sum256([]byte(token[strings.LastIndexByte(token, '.')+1:]))
	return hex.EncodeToString(sum[:])
}

// TestReplicaKilledMidRefresh: API.md §9, "a process killed at any moment leaves no
// half-written state". Three `pvauth serve` processes (migrated once before, by
// `pvauth migrate sql`, as a cluster's one-off job does) on one PostgreSQL database; eight
// refresh families rotate through all three; one replica is killed with SIGKILL while
// refreshes are in flight. Then, for every family:
//   - the database holds exactly one live refresh token (none half-written, none lost);
//   - when the client saw every rotation answered, its last token works exactly once (a
//     second use is reuse, 401);
//   - when a refresh was in flight on the killed replica, either it committed — the live
//     token is one the client never received, so its previous token is reuse (401) and
//     revokes the family: the expected, safe outcome (the user logs in again; nobody
//     holds a working token the server does not know about) — or it did not, and the
//     previous token is still the live one and works, once.
func TestReplicaKilledMidRefresh(t *testing.T) {
	dsn := testdb.Postgres(t)
	dir := t.TempDir()
	bin := binary(t)
	migrate := exec.Command(bin, "migrate", "sql", "--yes", dsn)
	migrate.Env = processEnv(dir)
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	cfg := fmt.Sprintf(`dsn: %q
log:
  level: error
ratelimit:
  enabled: false
hashers:
  argon2:
    memory_kib: 64
    iterations: 1
serve:
  public:
    host: 127.0.0.1
    base_url: %s
  admin:
    host: 127.0.0.1
secrets:
  default: [%q]
  cipher: [%q]
  file_signature: %q
`, dsn, issuer, testserver.TestSecrets["secrets.default"].([]any)[0], testserver.TestSecrets["secrets.cipher"].([]any)[0],
		testserver.TestSecrets["secrets.file_signature"])
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// Started at once, as a cluster starts: all three find no signing key and create one.
	procs := make([]*proc, 3)
	for i := range procs {
		procs[i] = startServe(t, bin, dir, file)
	}
	for _, p := range procs {
		waitReady(t, p)
	}
	c := &cluster{}
	for _, p := range procs {
		c.reps = append(c.reps, p.srv())
	}

	// Eight sessions of one user: TOTP enrolment, then recovery codes (a TOTP code
	// works once per step).
	u := c.newUser(t)
	p := pending(t, c.rep(0), u)
	r := do(c.rep(1), false, http.MethodGet, api+"/otp/setup", p, nil)
	want(t, "otp setup", r, http.StatusOK)
	u.Secret = testkit.Str(data(t, r)["secret"])
	r = do(c.rep(2), false, http.MethodPost, api+"/otp/verify", p, map[string]string{"otp": code(t, u.Secret, u.nextStep())})
	want(t, "enrolment", r, http.StatusOK)
	var first struct {
		Data struct {
			AccessToken   string   `json:"accessToken"`
			RefreshToken  string   `json:"refreshToken"`
			RecoveryCodes []string `json:"recoveryCodes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &first); err != nil || len(first.Data.RecoveryCodes) < 7 {
		t.Fatalf("enrolment answer: %v %s", err, r.Body)
	}
	fams := []*family{{sid: testkit.Str(testkit.JWTClaims(t, first.Data.AccessToken)["sid"]), acked: first.Data.RefreshToken}}
	for i := 0; i < 7; i++ {
		r := do(c.rep(i), false, http.MethodPost, api+"/otp/verify", pending(t, c.rep(i+1), u), map[string]string{"otp": first.Data.RecoveryCodes[i]})
		want(t, "login with a recovery code", r, http.StatusOK)
		ts := tokenSet(t, r)
		fams = append(fams, &family{sid: testkit.Str(testkit.JWTClaims(t, ts.AccessToken)["sid"]), acked: ts.RefreshToken})
	}

	// Refresh loops, each family on the replicas in turn; the victim (C) is killed while
	// they run.
	const victim = 2
	var mu sync.Mutex // guards procs[victim].killed against the loops
	stop := make(chan struct{})
	var loops sync.WaitGroup
	errs := make(chan string, 64)
	var inflight [3]atomic.Int64 // refreshes sent to each replica and not answered yet
	for fi, f := range fams {
		loops.Add(1)
		go func() {
			defer loops.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for i := fi; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ri := i % 3
				mu.Lock()
				if ri == victim && procs[victim].killed {
					ri = i % 2
				}
				mu.Unlock()
				body, _ := json.Marshal(map[string]string{"refreshToken": f.acked})
				inflight[ri].Add(1)
				resp, err := client.Post(procs[ri].public+api+"/refresh", "application/json", bytes.NewReader(body))
				inflight[ri].Add(-1)
				if err != nil {
					if ri == victim {
						f.lost = true // the answer died with the replica
						return
					}
					errs <- fmt.Sprintf("family %d: refresh on replica %s: %v", fi, repName(ri), err)
					return
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Sprintf("family %d: refresh %d on replica %s: %d %s", fi, f.n+1, repName(ri), resp.StatusCode, raw)
					return
				}
				var ts struct {
					Data struct {
						RefreshToken string `json:"refreshToken"`
					} `json:"data"`
				}
				if err := json.Unmarshal(raw, &ts); err != nil || ts.Data.RefreshToken == "" {
					errs <- fmt.Sprintf("family %d: refresh answer %s", fi, raw)
					return
				}
				f.acked, f.n = ts.Data.RefreshToken, f.n+1
				f.acks.Add(1)
			}
		}()
	}
	// Kill once every family has rotated through all three replicas (its i-th refresh
	// goes to replica i mod 3), whatever the machine's load.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ready := true
		for _, f := range fams {
			ready = ready && f.acks.Load() >= 3
		}
		if ready && inflight[victim].Load() > 0 { // and a refresh is in flight on the victim
			break
		}
		if time.Now().After(deadline) || len(errs) > 0 {
			close(stop)
			loops.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
			t.Fatal("the families did not rotate through the three replicas within 20s")
		}
	}
	mu.Lock()
	procs[victim].killed = true
	mu.Unlock()
	if err := procs[victim].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = procs[victim].cmd.Wait()
	time.Sleep(500 * time.Millisecond) // the others go on without it
	close(stop)
	loops.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if t.Failed() {
		t.FailNow()
	}

	// The database after the kill: one live refresh token per family, and which one.
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lost := 0
	for fi, f := range fams {
		rows, err := db.Query("SELECT signature FROM oauth2_refresh WHERE request_id = $1 AND active", f.sid)
		if err != nil {
			t.Fatal(err)
		}
		var live []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			live = append(live, s)
		}
		rows.Close()
		if len(live) != 1 {
			t.Fatalf("family %d (%d rotations acknowledged): %d live refresh tokens, want exactly 1", fi, f.n, len(live))
		}
		committed := live[0] != refreshSig(f.acked)
		if committed && !f.lost {
			t.Fatalf("family %d: the live refresh token is not the client's last acknowledged one, and no request was lost", fi)
		}
		var accessLive int
		if err := db.QueryRow("SELECT COUNT(*) FROM oauth2_access WHERE request_id = $1 AND active", f.sid).Scan(&accessLive); err != nil {
			t.Fatal(err)
		}
		if accessLive == 0 {
			t.Fatalf("family %d: a live refresh token but no live access token (half-written rotation)", fi)
		}

		// What the client can do now, on the surviving replicas (A and B).
		a, b := c.rep(fi%2), c.rep((fi+1)%2)
		refresh := func(srv *testserver.Server, token string) *testserver.Response {
			return do(srv, false, http.MethodPost, api+"/refresh", "", map[string]string{"refreshToken": token})
		}
		switch {
		case f.lost && committed:
			lost++
			t.Logf("family %d: the refresh in flight on the killed replica committed; the previous token is reuse", fi)
			want(t, fmt.Sprintf("family %d: previous token after a committed, unseen rotation", fi), refresh(a, f.acked), http.StatusUnauthorized)
			var n int
			if err := db.QueryRow("SELECT COUNT(*) FROM oauth2_refresh WHERE request_id = $1 AND active", f.sid).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Fatalf("family %d: reuse left %d live refresh tokens, want the family revoked", fi, n)
			}
		default:
			if f.lost {
				lost++
				t.Logf("family %d: the refresh in flight on the killed replica did not commit; the previous token is live", fi)
			}
			// The last acknowledged token works exactly once.
			want(t, fmt.Sprintf("family %d: last acknowledged token (%d rotations)", fi, f.n), refresh(a, f.acked), http.StatusOK)
			want(t, fmt.Sprintf("family %d: last acknowledged token again", fi), refresh(b, f.acked), http.StatusUnauthorized)
		}
	}
	total := 0
	for _, f := range fams {
		total += f.n
	}
	t.Logf("%d acknowledged rotations over %d families; %d refreshes were in flight on the killed replica", total, len(fams), lost)
}
