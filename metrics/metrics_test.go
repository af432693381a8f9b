package metrics_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	dto "github.com/prometheus/client_model/go"

	"github.com/pvpipe/pvauth/metrics"
	"github.com/pvpipe/pvauth/x"
)

// scrape GETs the handler over HTTP and parses the text exposition.
func scrape(t *testing.T, h http.Handler) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	return scrapeURL(t, srv.URL)
}

func scrapeURL(t *testing.T, u string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q, want the text format", ct)
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, body)
	}
	return families, string(body)
}

// series returns the metric of family name whose labels are exactly labels.
func series(t *testing.T, families map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	f, ok := families[name]
	if !ok {
		t.Fatalf("family %s missing", name)
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, lp := range m.GetLabel() {
			if labels[lp.GetName()] != lp.GetValue() {
				continue next
			}
		}
		return m
	}
	t.Fatalf("no %s series with labels %v", name, labels)
	return nil
}

func TestObserveAndScrape(t *testing.T) {
	m := metrics.New()
	m.Observe("public", "POST /api/v1/auth/login", 200, 30*time.Millisecond)
	m.Observe("public", "POST /api/v1/auth/login", 200, 70*time.Millisecond)
	m.Observe("public", "POST /api/v1/auth/login", 401, 2*time.Millisecond)
	m.Observe("admin", "GET /admin/identities/:id", 404, 3*time.Second)
	m.ObserveLogin(metrics.MethodPassword, metrics.ResultSuccess)
	m.ObserveLogin(metrics.MethodPassword, metrics.ResultSuccess)
	m.ObserveLogin(metrics.MethodBiometric, metrics.ResultFailure)
	m.ObserveRefresh(metrics.ResultReuse)
	m.AuditDropped()
	m.AuditDropped()
	m.AuditDropped()

	fams, text := scrape(t, m.Handler())

	if v := series(t, fams, "pvauth_http_requests_total", map[string]string{"server": "public", "route": "POST /api/v1/auth/login", "code": "200"}).GetCounter().GetValue(); v != 2 {
		t.Fatalf("login 200 = %v, want 2", v)
	}
	if v := series(t, fams, "pvauth_http_requests_total", map[string]string{"server": "public", "route": "POST /api/v1/auth/login", "code": "401"}).GetCounter().GetValue(); v != 1 {
		t.Fatalf("login 401 = %v, want 1", v)
	}
	if v := series(t, fams, "pvauth_http_requests_total", map[string]string{"server": "admin", "route": "GET /admin/identities/:id", "code": "404"}).GetCounter().GetValue(); v != 1 {
		t.Fatalf("admin 404 = %v, want 1", v)
	}

	h := series(t, fams, "pvauth_http_request_duration_seconds", map[string]string{"server": "public", "route": "POST /api/v1/auth/login"}).GetHistogram()
	if h.GetSampleCount() != 3 {
		t.Fatalf("histogram count = %d, want 3", h.GetSampleCount())
	}
	if s := h.GetSampleSum(); s < 0.101 || s > 0.103 {
		t.Fatalf("histogram sum = %v, want 0.102", s)
	}
	for _, b := range h.GetBucket() {
		want := uint64(0)
		switch ub := b.GetUpperBound(); {
		case ub >= 0.1:
			want = 3
		case ub >= 0.05:
			want = 2
		case ub >= 0.0025:
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Fatalf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if c := series(t, fams, "pvauth_http_request_duration_seconds", map[string]string{"server": "admin", "route": "GET /admin/identities/:id"}).GetHistogram().GetSampleCount(); c != 1 {
		t.Fatalf("admin histogram count = %d", c)
	}

	if v := series(t, fams, "pvauth_logins_total", map[string]string{"method": "password", "result": "success"}).GetCounter().GetValue(); v != 2 {
		t.Fatalf("password logins = %v", v)
	}
	if v := series(t, fams, "pvauth_logins_total", map[string]string{"method": "biometric", "result": "failure"}).GetCounter().GetValue(); v != 1 {
		t.Fatalf("biometric failures = %v", v)
	}
	if v := series(t, fams, "pvauth_token_refresh_total", map[string]string{"result": "reuse"}).GetCounter().GetValue(); v != 1 {
		t.Fatalf("refresh reuse = %v", v)
	}
	if v := series(t, fams, "pvauth_audit_dropped_total", map[string]string{}).GetCounter().GetValue(); v != 3 {
		t.Fatalf("audit dropped = %v", v)
	}

	// The Go runtime and process collectors are on the registry too.
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := fams[name]; !ok {
			t.Fatalf("%s missing from the scrape", name)
		}
	}
	if !strings.Contains(text, "# HELP pvauth_http_requests_total ") || !strings.Contains(text, "# TYPE pvauth_http_request_duration_seconds histogram") {
		t.Fatalf("HELP/TYPE lines missing:\n%s", text)
	}
}

func TestRegistriesAreSeparate(t *testing.T) {
	// Two instances (two test servers in one process) neither panic on registration
	// nor see each other's counts.
	a, b := metrics.New(), metrics.New()
	a.Observe("public", "GET /health/alive", 200, time.Millisecond)
	fams, _ := scrape(t, b.Handler())
	if f, ok := fams["pvauth_http_requests_total"]; ok && len(f.GetMetric()) > 0 {
		t.Fatalf("b sees a's requests: %v", f)
	}
}

func TestNilMetricsIsANoOp(t *testing.T) {
	var m *metrics.Metrics
	m.Observe("public", "x", 200, time.Millisecond)
	m.ObserveLogin("password", "success")
	m.ObserveRefresh("success")
	m.AuditDropped()
	var obs x.Observer = m
	obs.Observe("admin", "y", 500, time.Second)
}

// Through the real middleware and router: route labels are the registered patterns,
// never raw paths, so ids in URLs do not create series.
func TestRoutesThroughAccessLogAndRouter(t *testing.T) {
	m := metrics.New()
	r := x.NewAdminRouter()
	r.GET("/admin/identities/:id", func(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
		x.WriteData(w, http.StatusOK, map[string]string{})
	})
	m.RegisterAdminRoutes(r)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(x.Chain(r, x.WithRequestID, x.AccessLog("admin", quiet, m)))
	defer srv.Close()

	for _, p := range []string{"/admin/identities/1", "/admin/identities/2", "/admin/identities/3", "/nope/123", "/nope/456"} {
		res, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	res, err := http.Post(srv.URL+"/admin/identities/9", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()

	fams, _ := scrapeURL(t, srv.URL+metrics.RouteMetrics)
	if v := series(t, fams, "pvauth_http_requests_total", map[string]string{"server": "admin", "route": "GET /admin/identities/:id", "code": "200"}).GetCounter().GetValue(); v != 3 {
		t.Fatalf("GET /admin/identities/:id = %v, want 3", v)
	}
	if v := series(t, fams, "pvauth_http_requests_total", map[string]string{"server": "admin", "route": "not_found", "code": "404"}).GetCounter().GetValue(); v != 2 {
		t.Fatalf("not_found = %v, want 2", v)
	}
	if v := series(t, fams, "pvauth_http_requests_total", map[string]string{"server": "admin", "route": "method_not_allowed", "code": "405"}).GetCounter().GetValue(); v != 1 {
		t.Fatalf("method_not_allowed = %v, want 1", v)
	}
	for _, mm := range fams["pvauth_http_requests_total"].GetMetric() {
		for _, lp := range mm.GetLabel() {
			if lp.GetName() == "route" && (strings.Contains(lp.GetValue(), "/1") || strings.Contains(lp.GetValue(), "123")) {
				t.Fatalf("raw path in a route label: %q", lp.GetValue())
			}
		}
	}
}
