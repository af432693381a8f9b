package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/x"
)

// gatedPersister delegates to the real SQL persister, but can hold every write at a gate
// and/or make it slow, to show how the Logger behaves while the database lags.
type gatedPersister struct {
	audit.Persister
	gate    chan struct{} // when non-nil, writes wait until it is closed
	delay   atomic.Int64  // nanoseconds added to every write
	entered chan struct{} // receives one value per write that started (never blocks)
	writes  atomic.Int64  // writes started
	done    atomic.Int64  // writes finished
}

func newGated(p audit.Persister) *gatedPersister {
	return &gatedPersister{Persister: p, entered: make(chan struct{}, 1<<16)}
}

func (g *gatedPersister) InsertAuditEvents(ctx context.Context, events []audit.Event) error {
	g.writes.Add(1)
	select {
	case g.entered <- struct{}{}:
	default:
	}
	if g.gate != nil {
		<-g.gate
	}
	time.Sleep(time.Duration(g.delay.Load()))
	defer g.done.Add(1)
	return g.Persister.InsertAuditEvents(ctx, events)
}

func waitEntered(t *testing.T, g *gatedPersister) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the writer never called the persister")
	}
}

func listAll(t *testing.T, p audit.Persister, f audit.Filter) []audit.Event {
	t.Helper()
	f.Limit = 100000
	ev, err := p.ListAuditEvents(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestLoggerConcurrentLogThenFlush(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		l := audit.NewLogger(p)
		defer l.Close()

		const goroutines, perG = 50, 20
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range perG {
					l.Log(context.Background(), audit.Event{
						Type:     audit.TypeLogin,
						UserID:   audit.Int64(int64(g + 1)),
						Metadata: map[string]any{"j": j},
					})
				}
			}()
		}
		wg.Wait()
		l.Flush()

		got := listAll(t, p, audit.Filter{})
		if len(got) != goroutines*perG {
			t.Fatalf("stored %d events, want %d", len(got), goroutines*perG)
		}
		seen := map[string]bool{}
		for _, e := range got {
			k := fmt.Sprintf("%d/%v", *e.UserID, e.Metadata["j"])
			if seen[k] {
				t.Fatalf("event %s stored twice", k)
			}
			seen[k] = true
		}
		for g := 1; g <= goroutines; g++ {
			if n := len(listAll(t, p, audit.Filter{UserID: audit.Int64(int64(g))})); n != perG {
				t.Fatalf("user %d: %d events, want %d", g, n, perG)
			}
		}
		if l.Dropped() != 0 {
			t.Fatalf("dropped %d events", l.Dropped())
		}
	})
}

func TestLoggerLogNeverBlocksOnSlowPersister(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		slow := newGated(p)
		slow.delay.Store(int64(time.Second))
		l := audit.NewLogger(slow)
		defer l.Close()

		l.Log(context.Background(), audit.Event{Type: audit.TypeLogin})
		waitEntered(t, slow) // the writer is now stuck in a 1 s write

		const n = 1000
		var slowest time.Duration
		start := time.Now()
		for i := range n {
			t0 := time.Now()
			l.Log(context.Background(), audit.Event{Type: audit.TypeOTPVerify, Metadata: map[string]any{"i": i}})
			slowest = max(slowest, time.Since(t0))
		}
		total := time.Since(start)
		if slow.done.Load() != 0 {
			t.Fatalf("the slow write finished during the Log calls (took %s): the test proves nothing", total)
		}
		// Had Log waited for the database even once, this would take at least a second.
		if total > 250*time.Millisecond {
			t.Fatalf("%d Log calls took %s while the persister was busy", n, total)
		}
		if slowest > 50*time.Millisecond {
			t.Fatalf("slowest Log call took %s", slowest)
		}
		t.Logf("%d Log calls in %s (slowest %s) while a write was in progress", n, total, slowest)

		slow.delay.Store(0) // the point is made; store the rest quickly
		l.Flush()
		if got := len(listAll(t, p, audit.Filter{})); got != n+1 {
			t.Fatalf("stored %d events, want %d", got, n+1)
		}
		if l.Dropped() != 0 {
			t.Fatalf("dropped %d events although the queue was not full", l.Dropped())
		}
	})
}

func TestLoggerCloseDrains(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		slow := newGated(p)
		slow.delay.Store(int64(20 * time.Millisecond))
		l := audit.NewLogger(slow)

		const n = 600
		for i := range n {
			l.Log(context.Background(), audit.Event{Type: audit.TypeLogin, Metadata: map[string]any{"i": i}})
		}
		l.Close() // no Flush: Close must store what is queued
		if got := len(listAll(t, p, audit.Filter{})); got != n {
			t.Fatalf("after Close: stored %d events, want %d", got, n)
		}

		// After Close, Log is a harmless no-op, and Close is idempotent.
		l.Log(context.Background(), audit.Event{Type: audit.TypeLogout})
		l.Close()
		l.Flush()
		if got := len(listAll(t, p, audit.Filter{})); got != n {
			t.Fatalf("an event logged after Close was stored (%d events)", got)
		}
	})
}

func TestLoggerDropsWhenQueueFull(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		held := newGated(p)
		held.gate = make(chan struct{})
		l := audit.NewLogger(held)
		defer l.Close()
		var hook atomic.Int64
		l.OnDrop(func() { hook.Add(1) })

		l.Log(context.Background(), audit.Event{Type: audit.TypeLogin})
		waitEntered(t, held) // the writer holds one event and waits at the gate; the queue is empty

		const extra = 10
		start := time.Now()
		for range audit.QueueSize + extra {
			l.Log(context.Background(), audit.Event{Type: audit.TypeLogin})
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("filling the queue took %s", d)
		}
		if l.Dropped() != extra || hook.Load() != extra {
			t.Fatalf("dropped %d (hook saw %d), want %d", l.Dropped(), hook.Load(), extra)
		}
		close(held.gate)
		l.Flush()
		if got := len(listAll(t, p, audit.Filter{})); got != audit.QueueSize+1 {
			t.Fatalf("stored %d events, want %d", got, audit.QueueSize+1)
		}
	})
}

func TestLoggerBadEventDoesNotLoseItsBatch(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		held := newGated(p)
		held.gate = make(chan struct{})
		l := audit.NewLogger(held)
		defer l.Close()

		first := uuid.Must(uuid.NewV7()).String()
		l.Log(context.Background(), audit.Event{ID: first, Type: audit.TypeLogin})
		waitEntered(t, held)
		// These queue up behind the held write and go out as one batch; one of them
		// reuses the first event's id and fails the batch's INSERT.
		for i := range 9 {
			l.Log(context.Background(), audit.Event{Type: audit.TypeOTPVerify, Metadata: map[string]any{"i": i}})
		}
		l.Log(context.Background(), audit.Event{ID: first, Type: audit.TypeOTPVerify})
		close(held.gate)
		l.Flush()

		if got := len(listAll(t, p, audit.Filter{Type: audit.TypeOTPVerify})); got != 9 {
			t.Fatalf("stored %d of the 9 good events of the failed batch", got)
		}
		if w := held.writes.Load(); w < 3 {
			t.Fatalf("only %d writes: the failed batch was not retried event by event", w)
		}
		if l.Dropped() != 1 {
			t.Fatalf("dropped %d events, want the one refused (counted)", l.Dropped())
		}
	})
}

func TestLoggerFillsDefaultsFromRequest(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		l := audit.NewLogger(p)
		defer l.Close()

		longUA := strings.Repeat("ü", 600) // 2 bytes each: a byte cut would split one
		longType := "custom." + strings.Repeat("t", 100)
		trusted, _ := x.ParsePrefixes([]string{"10.0.0.0/8"})
		h := x.Chain(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			l.Log(r.Context(), audit.Event{Type: longType, Reason: strings.Repeat("é", 300)})
		}), x.WithClientIP(trusted), audit.WithUserAgent)
		req := httptest.NewRequest(http.MethodPost, "/api/v1/auth/login", nil)
		req.RemoteAddr = "10.1.2.3:5555"
		req.Header.Set("X-Forwarded-For", "203.0.113.7, 10.9.9.9")
		req.Header.Set("User-Agent", longUA)
		before := time.Now().UTC().Truncate(time.Second)
		h.ServeHTTP(httptest.NewRecorder(), req)
		l.Flush()

		got := listAll(t, p, audit.Filter{})
		if len(got) != 1 {
			t.Fatalf("stored %d events", len(got))
		}
		e := got[0]
		if u, err := uuid.Parse(e.ID); err != nil || u.Version() != 7 {
			t.Fatalf("id %q is not a UUIDv7", e.ID)
		}
		if e.IP != "203.0.113.7" {
			t.Fatalf("ip = %q, want the client behind the trusted proxy", e.IP)
		}
		if e.Result != audit.ResultSuccess {
			t.Fatalf("result = %q, want the default %q", e.Result, audit.ResultSuccess)
		}
		if e.CreatedAt.Before(before) || e.CreatedAt.After(time.Now()) {
			t.Fatalf("createdAt %s is not now", e.CreatedAt)
		}
		if e.Metadata == nil || len(e.Metadata) != 0 {
			t.Fatalf("metadata = %#v, want {}", e.Metadata)
		}
		if !utf8.ValidString(e.UserAgent) || utf8.RuneCountInString(e.UserAgent) != 512 || !strings.HasPrefix(longUA, e.UserAgent) {
			t.Fatalf("userAgent not cut to 512 characters: %d runes, valid=%v", utf8.RuneCountInString(e.UserAgent), utf8.ValidString(e.UserAgent))
		}
		if utf8.RuneCountInString(e.Reason) != 255 || !utf8.ValidString(e.Reason) {
			t.Fatalf("reason not cut to 255 characters: %d", utf8.RuneCountInString(e.Reason))
		}
		if len(e.Type) != 64 || !strings.HasPrefix(longType, e.Type) {
			t.Fatalf("type = %q, want the first 64 characters", e.Type)
		}
	})
}

func TestHash(t *testing.T) {
	// FIPS 180-2 test vector.
	if got := audit.Hash("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("Hash(abc) = %s", got)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(audit.Hash("any challenge")) {
		t.Fatal("Hash is not 64 lowercase hex digits")
	}
	if audit.Hash("a") == audit.Hash("b") {
		t.Fatal("Hash collides")
	}
}

func TestEventJSON(t *testing.T) {
	dev := "0b7e6f0c-3f1e-4a4b-9a7f-2f1f0d7f8a11"
	cest := time.FixedZone("CEST", 2*3600)
	full := audit.Event{
		ID: "0198c8a4-0000-7000-8000-000000000001", Type: audit.TypeDeviceRegister,
		UserID: audit.Int64(42), DeviceID: &dev, IP: "192.0.2.1", UserAgent: "ua",
		Result: audit.ResultFailure, Reason: "bad key",
		CreatedAt: time.Date(2025, 8, 20, 16, 30, 0, 123456789, cest),
		Metadata:  map[string]any{"challengeHash": audit.Hash("c")},
	}
	bare := audit.Event{ID: full.ID, Type: audit.TypeLogin, IP: "192.0.2.1", Result: audit.ResultSuccess,
		CreatedAt: time.Date(2025, 8, 20, 14, 30, 0, 0, time.UTC)}

	keys := func(v any) (map[string]any, []string) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return m, ks
	}
	m, ks := keys(full)
	if want := "[createdAt deviceId id ip metadata reason result type userAgent userId]"; fmt.Sprint(ks) != want {
		t.Fatalf("keys %v, want %s", ks, want)
	}
	if m["createdAt"] != "2025-08-20T14:30:00Z" {
		t.Fatalf("createdAt = %v, want RFC 3339 UTC", m["createdAt"])
	}
	if m["userId"] != float64(42) || m["deviceId"] != dev || m["reason"] != "bad key" {
		t.Fatalf("fields: %v", m)
	}
	m, ks = keys(bare)
	if want := "[createdAt id ip metadata result type userAgent userId]"; fmt.Sprint(ks) != want {
		t.Fatalf("bare keys %v, want %s", ks, want)
	}
	if m["userId"] != nil {
		t.Fatalf("userId = %v, want null", m["userId"])
	}
	if md, ok := m["metadata"].(map[string]any); !ok || len(md) != 0 {
		t.Fatalf("metadata = %#v, want {}", m["metadata"])
	}

	// The JSON reads back into an Event.
	b, _ := json.Marshal(full)
	var back audit.Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ID != full.ID || *back.UserID != 42 || *back.DeviceID != dev || !back.CreatedAt.Equal(full.CreatedAt.Truncate(time.Second)) {
		t.Fatalf("round trip: %+v", back)
	}
}
