// Package testserver runs the real pvauth servers (both ports, full middleware) on
// loopback for tests, with cheap password hashing.
package testserver

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/driver"
	"github.com/pvpipe/pvauth/driver/config"
)

// Server is a running pvauth.
type Server struct {
	PublicURL string
	AdminURL  string
	Registry  *driver.Registry
	Config    *config.Config
	Client    *http.Client
}

// TestSecrets are fixed secrets for tests.
var TestSecrets = map[string]any{
	"secrets.default":        []any{"test-system-secret-0123456789abcdef0123456789"},
	"secrets.cipher":         []any{"0123456789abcdef0123456789abcdef"},
	"secrets.file_signature": "test-file-signature-secret-0123456789abcdef",
}

// Start runs pvauth on dsn ("memory", or a DSN from testdb: an SQLite file or
// PostgreSQL). set overrides config keys (dotted); rate limits are off unless set turns
// them on.
func Start(t testing.TB, dsn string, set map[string]any) *Server {
	t.Helper()
	return StartWith(t, dsn, set, Options{})
}

// Options are the rarer knobs of StartWith.
type Options struct {
	// Dev runs as `serve --dev` (serves the sample login page at /ui/).
	Dev bool
	// Listener, when set, is the public listener (e.g. to know the port beforehand).
	PublicListener net.Listener
}

// StartWith is Start with Options.
func StartWith(t testing.TB, dsn string, set map[string]any, so Options) *Server {
	t.Helper()
	o := map[string]any{
		"dsn":                       dsn,
		"hashers.argon2.memory_kib": 64,
		"hashers.argon2.iterations": 1,
		"ratelimit.enabled":         false,
		"log.level":                 "error",
		"serve.public.base_url":     "http://127.0.0.1",
	}
	for k, v := range TestSecrets {
		o[k] = v
	}
	for k, v := range set {
		o[k] = v
	}
	cfg, err := config.Load(config.Options{Env: func(string) (string, bool) { return "", false }, Set: o, Dev: so.Dev})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	pl := so.PublicListener
	if pl == nil {
		if pl, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	reg, err := driver.New(ctx, cfg, driver.Options{Migrate: true})
	if err != nil {
		cancel()
		t.Fatalf("registry: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- reg.Serve(ctx, pl, al) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(35 * time.Second):
			t.Errorf("server did not stop")
		}
		reg.Close()
	})
	return &Server{
		PublicURL: "http://" + pl.Addr().String(),
		AdminURL:  "http://" + al.Addr().String(),
		Registry:  reg,
		Config:    cfg,
		Client:    &http.Client{Timeout: 30 * time.Second},
	}
}

// Response is a decoded HTTP response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v.
func (r *Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.Body, err)
	}
}

// Data decodes the {"data": …} envelope into v.
func (r *Response) Data(t testing.TB, v any) {
	t.Helper()
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	r.JSON(t, &env)
	if len(env.Data) == 0 {
		t.Fatalf("no data in %s", r.Body)
	}
	if err := json.Unmarshal(env.Data, v); err != nil {
		t.Fatalf("decoding data %s: %v", env.Data, err)
	}
}

// Do sends a request. body may be nil, a string/[]byte (sent as is), or a value
// (JSON-encoded). bearer, when not empty, is sent as Authorization: Bearer.
func (s *Server) Do(t testing.TB, method, url, bearer string, body any) *Response {
	t.Helper()
	var rd io.Reader
	ct := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", ct)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// Public and Admin are Do against the two ports (path starts with "/").
func (s *Server) Public(t testing.TB, method, path, bearer string, body any) *Response {
	t.Helper()
	return s.Do(t, method, s.PublicURL+path, bearer, body)
}

func (s *Server) Admin(t testing.TB, method, path string, body any) *Response {
	t.Helper()
	key := ""
	if keys := s.Config.Serve.Admin.APIKeys; len(keys) > 0 {
		key = keys[0]
	}
	return s.Do(t, method, s.AdminURL+path, key, body)
}
