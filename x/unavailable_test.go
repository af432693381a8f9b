package x_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/x"
)

var errDBDown = errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")

// A dependency failure wins over the 4xx a handler wrapped it in: a token lookup that
// failed is not an invalid token.
func TestAsErrorPrefersUnavailable(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		status int
	}{
		{"marked", x.Unavailable(errDBDown), 503},
		{"under a 401", x.ErrUnauthorized.WithCause(x.Unavailable(errDBDown)), 503},
		{"under a 404 and fmt wrapping", x.ErrNotFound.WithCause(fmt.Errorf("lookup: %w", x.Unavailable(errDBDown))), 503},
		{"a plain 401", x.ErrUnauthorized.WithCause(errDBDown), 401},
		{"unknown", errDBDown, 500},
		{"a client that left", fmt.Errorf("query: %w", context.Canceled), 500},
	}
	for _, c := range cases {
		e := x.AsError(c.err)
		if e.Status != c.status {
			t.Errorf("%s: %d, want %d", c.name, e.Status, c.status)
		}
		if c.status == 503 && (e.RetryAfter <= 0 || e.Code != "service_unavailable" || !errors.Is(c.err, x.ErrUnavailable)) {
			t.Errorf("%s: %+v", c.name, e)
		}
	}
	// A 503 of its own (an overload) keeps its message and gets a Retry-After.
	own := x.ErrUnavailable.WithMessage("Too busy.")
	if e := x.AsError(own); e.Message != "Too busy." || e.RetryAfter <= 0 {
		t.Errorf("own 503: %+v", e)
	}
}

type observed struct {
	mu       sync.Mutex
	statuses []int
}

func (o *observed) Observe(_, _ string, status int, _ time.Duration) {
	o.mu.Lock()
	o.statuses = append(o.statuses, status)
	o.mu.Unlock()
}

// logTo sends the default logger to buf for the test.
func logTo(t *testing.T, buf *syncBuffer) {
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })
}

// Over real HTTP: the contract's 503 body with Retry-After for a database failure, the
// RFC 6749 one on OAuth2 endpoints, and a client that disconnects mid-request logged
// as such (info, 499 in the access log and metrics), not as a server error.
func TestUnavailableAndDisconnectOverHTTP(t *testing.T) {
	var logs syncBuffer
	logTo(t, &logs)
	obs := &observed{}
	entered := make(chan struct{}, 1)
	r := x.NewPublicRouter()
	r.GET("/db", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		x.WriteError(w, r, x.ErrUnauthorized.WithCause(x.Unavailable(errDBDown)))
	})
	r.POST("/oauth2/token", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		if !x.WriteOAuth2Unavailable(w, r, x.Unavailable(errDBDown)) {
			t.Error("not written")
		}
	})
	r.GET("/slow", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		entered <- struct{}{}
		<-r.Context().Done() // a database call that the client's leaving cancels
		x.WriteError(w, r, fmt.Errorf("query: %w", r.Context().Err()))
	})
	h := x.Chain(r, x.WithRequestID, x.AccessLog("public", slog.Default(), obs))
	srv := httptest.NewServer(h)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/db")
	if err != nil {
		t.Fatal(err)
	}
	var body x.ErrorBody
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || body.StatusCode != 503 || body.Error != "service_unavailable" {
		t.Fatalf("db failure: %d Retry-After %q %+v", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}

	resp, err = http.Post(srv.URL+"/oauth2/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=refresh_token"))
	if err != nil {
		t.Fatal(err)
	}
	var oauth map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&oauth)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || oauth["error"] != "temporarily_unavailable" {
		t.Fatalf("oauth2 failure: %d %v", resp.StatusCode, oauth)
	}

	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/slow", nil)
	go func() {
		<-entered
		cancel()
	}()
	if resp, err := http.DefaultClient.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		t.Fatal("the request was answered")
	}
	// The server notices the closed connection and logs after the handler returns.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "status=499") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	if !strings.Contains(out, `level=INFO msg="client disconnected"`) || !strings.Contains(out, "status=499") {
		t.Fatalf("client disconnect not logged as such:\n%s", out)
	}
	if strings.Contains(out, "level=ERROR") {
		t.Fatalf("a disconnect or a 503 logged as an error:\n%s", out)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if want := []int{503, 503, 499}; fmt.Sprint(obs.statuses) != fmt.Sprint(want) {
		t.Fatalf("metrics saw %v, want %v", obs.statuses, want)
	}
}
