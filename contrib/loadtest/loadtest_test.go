package main

import (
	"bytes"
	"context"
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
				LoginUsers: 6,
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
			t.Logf("\n%s", out.String())
		})
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
	if s, err := parseScenarios("all"); err != nil || len(s) != 3 {
		t.Fatalf("all: %v %v", s, err)
	}
	if s, err := parseScenarios("login, refresh"); err != nil || strings.Join(s, ",") != "login,refresh" {
		t.Fatalf("list: %v %v", s, err)
	}
	if _, err := parseScenarios("nope"); err == nil {
		t.Fatal("unknown scenario accepted")
	}
}
