package confirmation_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkeys"
	"github.com/pvpipe/pvauth/internal/testkit"

	"github.com/pvpipe/pvauth/driver"
	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testserver"
)

type sseEvent struct {
	Event   string
	Data    map[string]any
	Comment string
	At      time.Time
	EOF     bool
}

type sseStream struct {
	Resp   *http.Response
	C      <-chan sseEvent
	cancel context.CancelFunc
}

// ctEvents opens the event stream of confirmation id; the events arrive on C, then one
// with EOF when the server closes the stream.
func ctEvents(t testing.TB, srv *testserver.Server, bearer, id string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.PublicURL+ctBase+"/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		cancel()
		t.Fatalf("events: %v", err)
	}
	ch := make(chan sseEvent, 64)
	s := &sseStream{Resp: resp, C: ch, cancel: cancel}
	t.Cleanup(s.Close)
	if resp.StatusCode != http.StatusOK {
		close(ch)
		return s
	}
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Event != "" || ev.Comment != "" {
					ev.At = time.Now()
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				ev.Comment = strings.TrimSpace(line[1:])
			case strings.HasPrefix(line, "event: "):
				ev.Event = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(line[len("data: "):]), &ev.Data)
			}
		}
		ch <- sseEvent{EOF: true, At: time.Now()}
	}()
	return s
}

func (s *sseStream) Close() {
	s.cancel()
	s.Resp.Body.Close()
}

// next returns the next status event (skipping comments) or fails after timeout.
func (s *sseStream) next(t testing.TB, timeout time.Duration) sseEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-s.C:
			if !ok {
				t.Fatalf("stream closed")
			}
			if ev.Comment != "" && ev.Event == "" {
				continue
			}
			return ev
		case <-deadline:
			t.Fatalf("no event within %v", timeout)
		}
	}
}

func TestConfirmationEvents(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		srv, _ := ctPushServer(t, dsn, nil)
		other := replicas(t, srv, dsn)
		u, stranger := testkit.NewUser(t, srv, "conf-"), testkit.NewUser(t, srv, "conf-")
		d := ctNewDevice(t, srv, u, false)

		// An approval (through the other replica) and a rejection (through this one, and
		// through the other) reach an open stream within a second, then it ends.
		for _, tc := range []struct {
			name  string
			via   *testserver.Server
			want  string
			apply func(c map[string]any, via *testserver.Server) *testserver.Response
		}{
			{"approved via the other replica", other, "approved", func(c map[string]any, via *testserver.Server) *testserver.Response {
				return ctVerify(t, via, u, testkit.Str(c["confirmationId"]), d, testkeys.SignChallenge(t, d.Key, testkit.Str(c["challenge"])))
			}},
			{"rejected via the other replica", other, "rejected", func(c map[string]any, via *testserver.Server) *testserver.Response {
				return ctReject(t, via, u, testkit.Str(c["confirmationId"]), map[string]any{"reason": "no"})
			}},
			{"approved via this replica", srv, "approved", func(c map[string]any, via *testserver.Server) *testserver.Response {
				return ctVerify(t, via, u, testkit.Str(c["confirmationId"]), d, testkeys.SignChallenge(t, d.Key, testkit.Str(c["challenge"])))
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := ctInit(t, srv, u, "transfer_money", map[string]any{"amount": 1})
				id := testkit.Str(c["confirmationId"])
				s := ctEvents(t, srv, u.JWT, id)
				if s.Resp.StatusCode != 200 {
					t.Fatalf("events: %d", s.Resp.StatusCode)
				}
				h := s.Resp.Header
				if !strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") || h.Get("Cache-Control") != "no-store" ||
					h.Get("X-Request-Id") == "" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Strict-Transport-Security") == "" {
					t.Errorf("stream headers: %v", h)
				}
				first := s.next(t, time.Second)
				if first.Event != "status" || first.Data["status"] != "pending" || first.Data["confirmationId"] != id ||
					first.Data["actionHash"] != c["actionHash"] {
					t.Fatalf("first event: %+v", first)
				}
				// The data is the object /status answers.
				st := testkit.DataObject(t, srv.Public(t, http.MethodGet, ctBase+"/"+id+"/status", u.JWT, nil))
				for k := range st {
					if _, ok := first.Data[k]; !ok {
						t.Errorf("event data lacks %q that status has", k)
					}
				}
				changed := time.Now()
				if r := tc.apply(c, tc.via); !testkit.CheckStatus(t, "change", r, 200) {
					t.FailNow()
				}
				ev := s.next(t, 2*time.Second)
				lat := ev.At.Sub(changed)
				t.Logf("%s: event after %v", tc.name, lat)
				if ev.Data["status"] != tc.want || lat > time.Second {
					t.Errorf("event %+v after %v, want %s within 1s", ev.Data, lat, tc.want)
				}
				if tc.want == "approved" && testkit.Str(ev.Data["receipt"]) == "" {
					t.Errorf("approved event without a receipt: %v", ev.Data)
				}
				if end := s.next(t, time.Second); !end.EOF {
					t.Errorf("after the final status: %+v, want the end of the stream", end)
				}
			})
		}

		t.Run("expired", func(t *testing.T) {
			// A server of its own, on a fresh database of the same kind, with a 2 s
			// lifetime.
			fresh := testdb.SQLiteFile(t)
			if strings.HasPrefix(dsn, "postgres") {
				fresh = testdb.Postgres(t)
			}
			srv, _ := ctPushServer(t, fresh, map[string]any{"ttl.confirmation": "2s"})
			u := testkit.NewUser(t, srv, "conf-")
			c := ctInit(t, srv, u, "transfer_money", nil)
			exp, _ := time.Parse(time.RFC3339, testkit.Str(c["expiresAt"]))
			s := ctEvents(t, srv, u.JWT, testkit.Str(c["confirmationId"]))
			if ev := s.next(t, time.Second); ev.Data["status"] != "pending" {
				t.Fatalf("first event: %+v", ev)
			}
			ev := s.next(t, 5*time.Second)
			t.Logf("expired event %v after expiresAt", ev.At.Sub(exp))
			if ev.Data["status"] != "expired" || ev.At.Before(exp) || ev.At.Sub(exp) > time.Second {
				t.Errorf("event %+v at %v, want expired within 1s of %v", ev.Data, ev.At, exp)
			}
			if end := s.next(t, time.Second); !end.EOF {
				t.Errorf("after expiry: %+v, want the end of the stream", end)
			}
			// A final confirmation: one event, then the end.
			s = ctEvents(t, srv, u.JWT, testkit.Str(c["confirmationId"]))
			if ev := s.next(t, time.Second); ev.Data["status"] != "expired" {
				t.Errorf("stream of an expired confirmation: %+v", ev)
			}
			if end := s.next(t, time.Second); !end.EOF {
				t.Errorf("stream of an expired confirmation goes on: %+v", end)
			}
		})

		t.Run("heartbeat", func(t *testing.T) {
			svc := srv.Registry.ConfirmationService()
			svc.SetHeartbeatInterval(200 * time.Millisecond)
			defer svc.SetHeartbeatInterval(15 * time.Second)
			c := ctInit(t, srv, u, "transfer_money", nil)
			s := ctEvents(t, srv, u.JWT, testkit.Str(c["confirmationId"]))
			deadline := time.After(time.Second)
			for comments := 0; comments < 2; {
				select {
				case ev := <-s.C:
					if ev.Comment != "" {
						comments++
					}
				case <-deadline:
					t.Fatalf("fewer than 2 comment lines in 1s with a 200ms heartbeat")
				}
			}
		})

		t.Run("not the owner", func(t *testing.T) {
			c := ctInit(t, srv, u, "transfer_money", nil)
			id := testkit.Str(c["confirmationId"])
			r := srv.Public(t, http.MethodGet, ctBase+"/"+id+"/events", stranger.JWT, nil)
			testkit.WantErrorWords(t, "another user's stream", r, 404)
			testkit.WantErrorWords(t, "unknown id", srv.Public(t, http.MethodGet, ctBase+"/6f1c1a60-1f3e-4c36-9b1d-1b0d3f0e0a11/events", u.JWT, nil), 404)
			testkit.WantErrorWords(t, "no token", srv.Public(t, http.MethodGet, ctBase+"/"+id+"/events", "", nil), 401)
		})

		t.Run("resources", func(t *testing.T) {
			// Goroutines per open stream, measured in this process (which also runs the
			// client side of each connection).
			runtime.GC()
			before := runtime.NumGoroutine()
			w0, _, _ := srv.Registry.Persister().PoolStats()
			t.Logf("before: %d writer connections in use", w0.InUse)
			const n = 20
			var streams []*sseStream
			for i := 0; i < n; i++ {
				c := ctInit(t, srv, u, "transfer_money", nil)
				s := ctEvents(t, srv, u.JWT, testkit.Str(c["confirmationId"]))
				s.next(t, time.Second)
				streams = append(streams, s)
			}
			during := runtime.NumGoroutine()
			// No database connection is held by an open stream (the poller may hold
			// one for the moment of its query, the audit writer for its batch): the
			// count must drop to at most one while all the streams stay open.
			srv.Registry.AuditLogger().Flush()
			inUse := 0
			for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				w, rd, _ := srv.Registry.Persister().PoolStats()
				if inUse = w.InUse + rd.InUse; inUse <= 1 || time.Now().After(deadline) {
					t.Logf("%d streams open: %d writer + %d reader connections in use", n, w.InUse, rd.InUse)
					break
				}
			}
			if inUse > 1 {
				t.Errorf("%d streams hold %d database connections", n, inUse)
			}
			per := float64(during-before) / n
			t.Logf("%d streams: %d goroutines before, %d during (%.1f per stream, client side included)", n, before, during, per)
			// Server: the connection's goroutine and net/http's background reader;
			// client: the transport's read and write loops and the test's reader.
			if per > 5.5 {
				t.Errorf("%.1f goroutines per stream, want at most 5 (client side included)", per)
			}
			// Precisely: the goroutines running this package's code are the n requests'
			// own and the hub's one poller.
			handlers, pollers, others := ctConfirmationGoroutines()
			t.Logf("goroutines in selfservice/confirmation: %d stream handlers, %d pollers, %d others", handlers, pollers, others)
			if handlers != n || pollers > 1 || others != 0 {
				t.Errorf("%d stream handlers, %d pollers, %d others; want %d, at most 1, 0", handlers, pollers, others, n)
			}
			for _, s := range streams {
				s.Close()
			}
		})
	})
}

// A stream outlives the server's read and write timeouts (shortened here to 1 s): it
// lifts them for itself, keeps sending heartbeats and still delivers the final status.
func TestConfirmationEventsOutliveServerTimeouts(t *testing.T) {
	rt, wt := driver.ReadTimeout, driver.WriteTimeout
	t.Cleanup(func() { driver.ReadTimeout, driver.WriteTimeout = rt, wt }) // after the server stops
	driver.ReadTimeout, driver.WriteTimeout = time.Second, time.Second
	srv, _ := ctPushServer(t, "memory", nil)
	srv.Registry.ConfirmationService().SetHeartbeatInterval(300 * time.Millisecond)
	u := testkit.NewUser(t, srv, "conf-")
	d := ctNewDevice(t, srv, u, false)
	c := ctInit(t, srv, u, "transfer_money", nil)
	s := ctEvents(t, srv, u.JWT, testkit.Str(c["confirmationId"]))
	if ev := s.next(t, time.Second); ev.Data["status"] != "pending" {
		t.Fatalf("first event %+v", ev)
	}
	deadline := time.After(2500 * time.Millisecond)
	comments := 0
wait:
	for {
		select {
		case ev := <-s.C:
			if ev.EOF {
				t.Fatalf("the stream ended after %d heartbeats, within the shortened server timeouts", comments)
			}
			if ev.Comment != "" {
				comments++
			}
		case <-deadline:
			break wait
		}
	}
	if comments < 5 {
		t.Errorf("%d heartbeats in 2.5 s at 300 ms", comments)
	}
	testkit.CheckStatus(t, "verify", ctVerify(t, srv, u, testkit.Str(c["confirmationId"]), d, testkeys.SignChallenge(t, d.Key, testkit.Str(c["challenge"]))), 200)
	if ev := s.next(t, time.Second); ev.Data["status"] != "approved" {
		t.Errorf("after 2.5 s: %+v, want approved", ev)
	}
}

// Service.Wait is the Go way to the outcome (what a CIBA grant will use): it returns when
// the confirmation is decided, through any replica, or has expired.
func TestConfirmationServiceWait(t *testing.T) {
	srv, _ := ctPushServer(t, "memory", map[string]any{"ttl.confirmation": "2s"})
	svc := srv.Registry.ConfirmationService()
	u := testkit.NewUser(t, srv, "conf-")
	d := ctNewDevice(t, srv, u, false)
	ctx := context.Background()

	in, err := svc.Initiate(ctx, u.ID, "oauth2_login", json.RawMessage(`{"client":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		c, err := svc.Wait(ctx, u.ID, in.ID)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- c.Status
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	testkit.CheckStatus(t, "verify", ctVerify(t, srv, u, in.ID, d, testkeys.SignChallenge(t, d.Key, in.Challenge)), 200)
	select {
	case s := <-got:
		if s != "approved" {
			t.Errorf("Wait: %s", s)
		}
		t.Logf("Wait returned %v after the approval", time.Since(start))
	case <-time.After(time.Second):
		t.Fatalf("Wait did not return within 1s of the approval")
	}

	in, err = svc.Initiate(ctx, u.ID, "oauth2_login", nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := svc.Wait(ctx, u.ID, in.ID)
	if err != nil || c.EffectiveStatus(time.Now()) != "expired" || time.Now().After(c.ExpiresAt.Add(time.Second)) {
		t.Errorf("Wait on an unanswered confirmation: %+v %v", c, err)
	}
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	in, _ = svc.Initiate(ctx, u.ID, "oauth2_login", nil)
	if _, err := svc.Wait(tctx, u.ID, in.ID); err == nil {
		t.Errorf("Wait ignored its context")
	}
}

// Shutting the service down (the public server's shutdown hook) ends open streams at
// once, so that a graceful shutdown does not wait for them.
func TestConfirmationEventsEndOnShutdown(t *testing.T) {
	srv, _ := ctPushServer(t, "memory", nil)
	u := testkit.NewUser(t, srv, "conf-")
	c := ctInit(t, srv, u, "transfer_money", nil)
	s := ctEvents(t, srv, u.JWT, testkit.Str(c["confirmationId"]))
	if ev := s.next(t, time.Second); ev.Data["status"] != "pending" {
		t.Fatalf("first event %+v", ev)
	}
	srv.Registry.ConfirmationService().Shutdown()
	if ev := s.next(t, time.Second); !ev.EOF {
		t.Errorf("after shutdown: %+v, want the end of the stream", ev)
	}
}

// ctConfirmationGoroutines counts the goroutines whose stack runs selfservice/confirmation
// code: event stream handlers, the hub's poller, and any other.
func ctConfirmationGoroutines() (handlers, pollers, others int) {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		switch {
		case strings.Contains(g, "confirmation.(*Handler).events"):
			handlers++
		case strings.Contains(g, "confirmation.(*hub).poll"):
			pollers++
		case strings.Contains(g, "pvauth/selfservice/confirmation.") && !strings.Contains(g, "confirmation_test."):
			others++
		}
	}
	return handlers, pollers, others
}
