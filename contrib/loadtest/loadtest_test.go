package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testserver"
)

// Each scenario runs for a second on two workers against the real server and must
// succeed every time.
func TestScenarios(t *testing.T) {
	srv := testserver.Start(t, "memory", nil)
	for _, name := range scenarioNames {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			results, err := run(context.Background(), options{
				Public: srv.PublicURL, Admin: srv.AdminURL,
				Concurrency: 2, Duration: time.Second, Scenarios: []string{name},
				LoginUsers: 6, Streams: 40,
			}, &out)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			if len(results) != 1 {
				t.Fatalf("%d results", len(results))
			}
			r := results[0]
			if r.OK() == 0 || r.ErrorCount() != 0 || r.Requests != len(r.Latencies) {
				t.Fatalf("%s: %d requests, %d ok, errors %s\n%s", name, r.Requests, r.OK(), r.ErrorSummary(), out.String())
			}
			if p50, p99 := r.Percentile(50), r.Percentile(99); p50 <= 0 || p99 < p50 || r.Max() < p99 {
				t.Errorf("percentiles p50 %s p99 %s max %s", p50, p99, r.Max())
			}
			if !strings.Contains(out.String(), "scenario") || !strings.Contains(out.String(), name) {
				t.Errorf("no report table:\n%s", out.String())
			}
			if note, ok := unitNotes[name]; ok && !strings.Contains(out.String(), note) {
				t.Errorf("no %q note:\n%s", note, out.String())
			}
			t.Logf("\n%s", out.String())
		})
	}
}

// unitNotes is what the report says a row of a multi-request scenario is.
var unitNotes = map[string]string{
	"login":               "logins/s over 2 connections",
	"biometric":           "logins/s over 2 connections; a row is one login = 2 requests",
	"confirmation":        "round trips/s over 2 connections; a row is one round trip = 3 requests",
	"confirmation_events": "round trips/s over 2 connections; a row is one round trip = initiate + events stream + verify",
	"streams":             "40 streams open at once",
	"client_credentials":  "JWT access tokens/s over 2 connections",
}

// One run of the new scenarios sets up the worker devices and the OAuth2 client once.
func TestSharedSetup(t *testing.T) {
	srv := testserver.Start(t, "memory", nil)
	var out bytes.Buffer
	results, err := run(context.Background(), options{
		Public: srv.PublicURL, Admin: srv.AdminURL,
		Concurrency: 2, Duration: 200 * time.Millisecond,
		Scenarios: []string{"biometric", "confirmation", "client_credentials", "oauth2_introspect"},
	}, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, r := range results {
		if r.OK() == 0 || r.ErrorCount() != 0 {
			t.Errorf("%s: %d ok, errors %s", r.Name, r.OK(), r.ErrorSummary())
		}
	}
	if n := strings.Count(out.String(), "# devices: "); n != 1 {
		t.Errorf("devices set up %d times:\n%s", n, out.String())
	}
	if n := strings.Count(out.String(), "# oauth2: client "); n != 1 {
		t.Errorf("OAuth2 client created %d times:\n%s", n, out.String())
	}
}

// A rate-limited server is named as the cause of 429s.
func TestRateLimitHint(t *testing.T) {
	srv := testserver.Start(t, "memory", map[string]any{
		"ratelimit.enabled":                      true,
		"ratelimit.rules.mobile_challenge.limit": 2,
	})
	var out bytes.Buffer
	results, err := run(context.Background(), options{
		Public: srv.PublicURL, Admin: srv.AdminURL,
		Concurrency: 1, Duration: 300 * time.Millisecond, Scenarios: []string{"biometric"},
	}, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if results[0].Errors["challenge 429"] == 0 || !strings.Contains(out.String(), "biometric: HTTP 429: the server rate-limits, run it with RATELIMIT_ENABLED=false") {
		t.Fatalf("no 429 or no hint:\n%s", out.String())
	}
}

func TestSignChallenge(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d := &device{key: key}
	challenge := []byte("0123456789abcdef0123456789abcdef")
	sig, err := d.signChallenge(base64.StdEncoding.EncodeToString(challenge))
	if err != nil {
		t.Fatal(err)
	}
	der, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(challenge)
	if !ecdsa.VerifyASN1(&key.PublicKey, sum[:], der) {
		t.Fatal("signature does not verify over SHA-256 of the raw challenge")
	}
	if _, err := d.signChallenge("not base64!"); err == nil {
		t.Fatal("a non-base64 challenge was signed")
	}
}

func TestIsJWT(t *testing.T) {
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","typ":"JWT"}`))
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`))
	for tok, want := range map[string]bool{
		hdr + ".e30.c2ln": true, none + ".e30.c2ln": false, "ory_at_abc.def": false, "a.b.c": false, hdr + ".e30.": false,
	} {
		if got := isJWT(tok); got != want {
			t.Errorf("isJWT(%q) = %v", tok, got)
		}
	}
}

func TestAdminKeyChecked(t *testing.T) {
	srv := testserver.Start(t, "memory", map[string]any{"serve.admin.api_keys": []any{"test-admin-key-0123456789"}})
	var out bytes.Buffer
	_, err := run(context.Background(), options{
		Public: srv.PublicURL, Admin: srv.AdminURL, AdminKey: "wrong",
		Concurrency: 1, Duration: time.Second, Scenarios: []string{"introspect"},
	}, &out)
	if err == nil || !strings.Contains(err.Error(), "admin API refused the key") {
		t.Fatalf("a wrong admin key: %v", err)
	}
	results, err := run(context.Background(), options{
		Public: srv.PublicURL, Admin: srv.AdminURL, AdminKey: "test-admin-key-0123456789",
		Concurrency: 1, Duration: 200 * time.Millisecond, Scenarios: []string{"introspect"},
	}, &out)
	if err != nil || results[0].OK() == 0 || results[0].ErrorCount() != 0 {
		t.Fatalf("with the right key: %v\n%s", err, out.String())
	}
}

func TestPercentile(t *testing.T) {
	r := &result{}
	for i := 1; i <= 100; i++ {
		r.Latencies = append(r.Latencies, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 90: 90 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond} {
		if got := r.Percentile(p); got != want {
			t.Errorf("p%v = %s, want %s", p, got, want)
		}
	}
	if (&result{}).Percentile(50) != 0 {
		t.Error("empty percentile")
	}
}

func TestParseScenarios(t *testing.T) {
	if s, err := parseScenarios("all"); err != nil || len(s) != 9 || s[len(s)-1] != "login" {
		t.Fatalf("all: %v %v", s, err)
	}
	if s, err := parseScenarios("login, refresh"); err != nil || strings.Join(s, ",") != "login,refresh" {
		t.Fatalf("list: %v %v", s, err)
	}
	if s, err := parseScenarios("biometric,confirmation,client_credentials,oauth2_introspect"); err != nil || len(s) != 4 {
		t.Fatalf("new scenarios: %v %v", s, err)
	}
	if _, err := parseScenarios("nope"); err == nil {
		t.Fatal("unknown scenario accepted")
	}
}
