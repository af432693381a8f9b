package x_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/x"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestRequestID(t *testing.T) {
	var (
		mu   sync.Mutex
		seen string
	)
	srv := httptest.NewServer(x.WithRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = x.RequestID(r.Context())
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})))
	defer srv.Close()

	do := func(id string, set bool) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if set {
			req.Header.Set("X-Request-Id", id)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Get("X-Request-Id")
		mu.Lock()
		defer mu.Unlock()
		if got != seen {
			t.Fatalf("response id %q differs from the context id %q", got, seen)
		}
		return got
	}

	for _, safe := range []string{"abc-123", "A.b_c-9", strings.Repeat("z", 64), "0"} {
		if got := do(safe, true); got != safe {
			t.Errorf("safe id %q was replaced by %q", safe, got)
		}
	}
	for _, unsafe := range []string{
		"",
		"has space",
		"<script>alert(1)</script>",
		"semi;colon",
		"a/b",
		"ünïcode",
		strings.Repeat("z", 65),
		`quote"d`,
	} {
		got := do(unsafe, unsafe != "")
		if got == unsafe || !uuidRE.MatchString(got) {
			t.Errorf("unsafe id %q: got %q, want a fresh UUID", unsafe, got)
		}
	}
	if a, b := do("", false), do("", false); a == b {
		t.Errorf("two requests without an id got the same id %q", a)
	}
}

func TestSecurityHeaders(t *testing.T) {
	srv := httptest.NewServer(x.SecurityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x.WriteError(w, r, x.ErrNotFound)
	})))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := map[string]string{
		"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
		"X-Content-Type-Options":    "nosniff",
		"X-Frame-Options":           "DENY",
		"X-Xss-Protection":          "1; mode=block",
		"Content-Security-Policy":   "default-src 'self'",
		"Cache-Control":             "no-store",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if resp.StatusCode != 404 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestRecover(t *testing.T) {
	logs := captureSlog(t)
	h := x.Chain(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("boom: secret-panic-detail")
		case "/abort":
			panic(http.ErrAbortHandler)
		case "/nil-map":
			var m map[string]int
			m["x"] = 1
		}
		w.WriteHeader(http.StatusNoContent)
	}), x.WithRequestID, x.Recover)
	srv := httptest.NewServer(h)
	defer srv.Close()

	for _, path := range []string{"/panic", "/nil-map"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("X-Request-Id", "recover-test-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b := readErrorBody(t, resp)
		if resp.StatusCode != 500 || b.Error != "internal_error" || b.Message != x.ErrInternal.Message {
			t.Fatalf("%s: status %d body %+v", path, resp.StatusCode, b)
		}
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s: content type %q", path, resp.Header.Get("Content-Type"))
		}
	}
	out := logs.String()
	if !strings.Contains(out, "panic while serving request") || !strings.Contains(out, "recover-test-1") ||
		!strings.Contains(out, "secret-panic-detail") {
		t.Fatalf("the panic was not logged with its request id: %s", out)
	}

	// The server keeps serving after a panic.
	resp, err := http.Get(srv.URL + "/ok")
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("after panic: %v %v", resp, err)
	}
	resp.Body.Close()

	// http.ErrAbortHandler keeps its meaning: the connection is cut, no 500 body.
	resp, err = http.Get(srv.URL + "/abort")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("ErrAbortHandler produced a response: %d", resp.StatusCode)
	}
}

// captureSlog routes the default slog logger into a buffer for the test.
func captureSlog(t *testing.T) *syncBuffer {
	t.Helper()
	buf := &syncBuffer{}
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return buf
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type observation struct {
	server, route string
	status        int
	d             time.Duration
}

type recordingObserver struct {
	mu  sync.Mutex
	obs []observation
}

func (o *recordingObserver) Observe(server, route string, status int, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.obs = append(o.obs, observation{server, route, status, d})
}

func TestRouterAndAccessLog(t *testing.T) {
	logBuf := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logBuf, nil))
	obs := &recordingObserver{}

	rt := x.NewPublicRouter()
	rt.GET("/api/v1/items/:id", func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		x.WriteData(w, http.StatusOK, map[string]string{"id": ps.ByName("id")})
	})
	rt.Handler(http.MethodPost, "/api/v1/plain", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	if !rt.Lookup(http.MethodGet, "/api/v1/items/9") || rt.Lookup(http.MethodDelete, "/api/v1/items/9") {
		t.Fatal("Lookup disagrees with the registered routes")
	}
	srv := httptest.NewServer(x.Chain(rt, x.WithRequestID, x.AccessLog("public", logger, obs)))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/api/v1/items/42?token=secret-query-value")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Data map[string]string `json:"data"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.StatusCode != 200 || got.Data["id"] != "42" {
		t.Fatalf("GET: %d %+v", resp.StatusCode, got)
	}

	resp, err = http.Post(srv.URL+"/api/v1/plain", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST plain: %d", resp.StatusCode)
	}

	resp, err = http.Get(srv.URL + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	if b := readErrorBody(t, resp); resp.StatusCode != 404 || b.Error != "not_found" || !strings.Contains(b.Message, "/nope") {
		t.Fatalf("404: %d %+v", resp.StatusCode, b)
	}

	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/api/v1/items/1", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if b := readErrorBody(t, resp); resp.StatusCode != 405 || b.Error != "method_not_allowed" {
		t.Fatalf("405: %d %+v", resp.StatusCode, b)
	}

	// A trailing slash is not redirected.
	resp, err = http.Get(srv.URL + "/api/v1/items/42/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("trailing slash: %d", resp.StatusCode)
	}

	obs.mu.Lock()
	defer obs.mu.Unlock()
	want := []observation{
		{"public", "GET /api/v1/items/:id", 200, 0},
		{"public", "POST /api/v1/plain", 202, 0},
		{"public", "not_found", 404, 0},
		{"public", "method_not_allowed", 405, 0},
		{"public", "not_found", 404, 0},
	}
	if len(obs.obs) != len(want) {
		t.Fatalf("observations %+v", obs.obs)
	}
	for i, w := range want {
		o := obs.obs[i]
		if o.server != w.server || o.route != w.route || o.status != w.status {
			t.Errorf("observation %d = %+v, want %+v", i, o, w)
		}
	}

	lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d log lines: %s", len(lines), logBuf.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first["route"] != "GET /api/v1/items/:id" || first["path"] != "/api/v1/items/42" ||
		first["status"] != float64(200) || !uuidRE.MatchString(first["request_id"].(string)) {
		t.Fatalf("log line %s", lines[0])
	}
	if strings.Contains(logBuf.String(), "secret-query-value") {
		t.Fatal("the query string was logged")
	}
}

func TestRouteWithoutHolder(t *testing.T) {
	// Without WithRequestID nobody prepared the route holder: Route says "unmatched" and
	// routing still works.
	rt := x.NewAdminRouter()
	var route string
	rt.DELETE("/admin/things/:id", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		route = x.Route(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, "/admin/things/1", nil))
	if rec.Code != http.StatusNoContent || route != "unmatched" {
		t.Fatalf("%d %q", rec.Code, route)
	}
}

func TestChainOrder(t *testing.T) {
	var order []string
	mw := func(name string) x.Middleware {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				order = append(order, name)
				next.ServeHTTP(w, r)
			})
		}
	}
	h := x.Chain(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { order = append(order, "handler") }),
		mw("outer"), mw("inner"))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	if strings.Join(order, ",") != "outer,inner,handler" {
		t.Fatalf("order %v", order)
	}
}

func TestLimitBodyRejectsAnnouncedLengthWithoutReading(t *testing.T) {
	called := false
	h := x.LimitBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true }))
	r := httptest.NewRequest(http.MethodPost, "/", io.LimitReader(zeroReader{}, 0))
	r.ContentLength = x.MaxBodyBytes + 1
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if called || rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("called=%v status=%d", called, rec.Code)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
